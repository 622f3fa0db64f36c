package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"1M", 1 << 20, true},
		{"4MiB", 4 << 20, true},
		{"512K", 512 << 10, true},
		{"512k", 512 << 10, true},
		{"2 GiB", 2 << 30, true},
		{"64KB", 64 << 10, true},
		{"10B", 10, true},
		{"0", 0, true},
		{"", 0, false},
		{"M", 0, false},
		{"-1M", 0, false},
		{"1.5M", 0, false},
		{"1T", 0, false},
		{"99999999999G", 0, false},
	} {
		got, err := parseSize(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", tc.in, got)
		}
	}
}

func TestMountFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"--block-size", "3M"}, "power of two"},
		{[]string{"--block-size", "32K"}, "64K to 64M"},
		{[]string{"--block-size", "128M"}, "64K to 64M"},
		{[]string{"--block-size", "lots"}, "not a size"},
		{[]string{"--max-conns", "0"}, "1 to 256"},
		{[]string{"--read-timeout", "-1s"}, "negative"},
		{[]string{"--read-timeout", "soon"}, "read-timeout"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{nil, "want MANIFEST and MOUNTPOINT"},
	} {
		args := append([]string{"mount"}, tc.args...)
		if len(tc.args) > 0 {
			args = append(args, "m.json", t.TempDir())
		}
		var stderr bytes.Buffer
		err := run(context.Background(), args, &stderr, &stderr)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error naming %q", args, err, tc.want)
		}
		if code := classify(err); code != exitUsage {
			t.Errorf("%q: exit code %d, want %d", args, code, exitUsage)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, cmd := range []string{"mount", "unmount", "demo"} {
		var out bytes.Buffer
		err := run(context.Background(), []string{cmd, "--help"}, &out, &out)
		if classify(err) != exitOK {
			t.Errorf("%s --help: %v", cmd, err)
		}
		for _, want := range []string{"Usage: ferry " + cmd, "Flags:", "--help", "Example:\n  ferry " + cmd} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, out.String())
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mount", "unmount", "demo", "Exit codes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if err := run(context.Background(), []string{"frobnicate"}, &out, &out); classify(err) != exitUsage {
		t.Errorf("unknown command: %v", err)
	}
	if err := run(context.Background(), nil, &out, &out); classify(err) != exitUsage {
		t.Errorf("no command: %v", err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	a, err := defaultCacheDir("/data/set.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "/xdg/ferry/set-") || len(filepath.Base(a)) != len("set-")+12 {
		t.Errorf("cache dir %q", a)
	}
	b, _ := defaultCacheDir("/other/set.json.gz")
	if a == b {
		t.Errorf("two manifests share %q", a)
	}
	again, _ := defaultCacheDir("/data/../data/set.json.gz")
	if again != a {
		t.Errorf("same manifest: %q and %q", a, again)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	c, _ := defaultCacheDir("/data/set.json.gz")
	if !strings.HasPrefix(c, "/home/u/.cache/ferry/set-") {
		t.Errorf("without XDG_CACHE_HOME: %q", c)
	}
}

func TestUnmountNotMounted(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"unmount", t.TempDir()}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "not a ferry mount") || classify(err) != exitFailure {
		t.Errorf("unmount of a plain directory: %v", err)
	}
}
