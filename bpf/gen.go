package bpf

// Run through `make generate`, which pins the compiler (BPF2GO_CC) and its flags (BPF2GO_CFLAGS).
//go:generate go tool bpf2go -type parse_counter -type port_flags -type exchange_kind -type proto_slot -type learn_meta -type slot_state -type table_shape -type flow_way -type table_id -type exchange_key -type exchange_value -type unexpected_key -type unexpected_value -type ephemeral_key -type ephemeral_value -type flow_key -type flow_value Portwatch portwatch.c
