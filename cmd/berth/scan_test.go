package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// --scan and --osv-data go together; the defaults apply.
func TestScanFlags(t *testing.T) {
	c, err := parseServeFlags([]string{"--scan", "--osv-data", "osv"}, io.Discard)
	if err != nil || !c.Scan.Enabled || c.Scan.OSVData != "osv" || c.Scan.Refresh <= 0 || c.Scan.Workers != 2 {
		t.Fatalf("--scan --osv-data: %+v, %v", c.Scan, err)
	}
	for _, args := range [][]string{{"--scan"}, {"--osv-data", "osv"}} {
		var stderr bytes.Buffer
		if _, err := parseServeFlags(args, &stderr); !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "--") {
			t.Errorf("%v: %v %q", args, err, stderr.String())
		}
	}
}

// berth scan refuses bad flags with the usage exit code, before any
// network.
func TestScanUsage(t *testing.T) {
	for _, args := range [][]string{
		{"scan"},
		{"scan", "--fail-on", "severe", "r.example/a:b"},
		{"scan", "--format", "xml", "r.example/a:b"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}
