package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
)

// runMainEnv makes the test binary act as portwatch itself: the lab tests
// run it inside the lab's namespaces (`ip netns exec NODE TESTBINARY probe
// ...`), so that what they test is the command as people run it, without
// building a separate binary.
const runMainEnv = "PORTWATCH_TEST_RUN_MAIN"

// bmcFarmEnv makes the test binary a farm of BMCs for the benchmark: it
// answers RMCP presence pings on port 623 of every address it is given
// and accepts TCP connections on port 623.
const bmcFarmEnv = "PORTWATCH_TEST_BMC_FARM"

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(runMainEnv) == "1":
		os.Exit(run(os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
	case os.Getenv(bmcFarmEnv) == "1":
		if err := serveBMCFarm(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "bmc farm:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveBMCFarm answers for COUNT addresses from FIRST (its arguments) until
// it is killed; it prints "ready" once every socket is bound.
func serveBMCFarm(args []string) error {
	if len(args) != 2 {
		return errors.New("want FIRST-ADDRESS COUNT")
	}
	first, err := netip.ParseAddr(args[0])
	if err != nil {
		return err
	}
	count, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", ":623")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	a := first
	for range count {
		// One socket per address, so that each answer leaves from the
		// address the ping went to, as a BMC's does.
		pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(a, 623).String())
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 512)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n >= 12 && buf[8] == 0x80 { // an ASF presence ping
					pong := []byte{6, 0, 0xff, 6, 0, 0, 0x11, 0xbe, 0x40, buf[9], 0, 0x10,
						0, 0, 0x11, 0xbe, 0, 0, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0}
					_, _ = pc.WriteTo(pong, from)
				}
			}
		}()
		a = a.Next()
	}
	fmt.Println("ready")
	select {}
}
