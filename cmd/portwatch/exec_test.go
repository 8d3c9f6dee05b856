package main

import (
	"os"
	"testing"
)

// runMainEnv makes the test binary act as portwatch itself: the lab tests
// run it inside the lab's namespaces (`ip netns exec NODE TESTBINARY probe
// ...`), so that what they test is the command as people run it, without
// building a separate binary.
const runMainEnv = "PORTWATCH_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
	}
	os.Exit(m.Run())
}
