package bpf

// Run through `make generate`, which pins the compiler (BPF2GO_CC) and its flags (BPF2GO_CFLAGS).
//go:generate go tool bpf2go -type parse_counter -type port_flags -type exchange_kind -type proto_slot -type learn_meta Portwatch portwatch.c
