package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestCacheCapacityFlags(t *testing.T) {
	parse := func(args ...string) (validated, error) {
		o := &mountOptions{}
		fs := pflag.NewFlagSet("mount", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return validated{}, err
		}
		return o.validate()
	}
	v, err := parse("--cache-max-size", "64MiB", "--cache-min-free", "1G")
	if err != nil || v.cacheMaxSize != 64<<20 || v.cacheMinFree != 1<<30 {
		t.Fatalf("parsed %+v, %v", v, err)
	}
	if v, err := parse(); err != nil || v.cacheMaxSize != 0 || v.cacheMinFree != 0 {
		t.Fatalf("defaults %+v, %v; want no limit", v, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cache-max-size", "lots"}, "--cache-max-size"},
		{[]string{"--block-size", "1M", "--cache-max-size", "1M"}, "at least two blocks"},
		{[]string{"--cache-min-free", "-1"}, "--cache-min-free"},
	} {
		args := append(append([]string{"mount"}, tc.args...), "m.json", t.TempDir())
		var stderr bytes.Buffer
		err := run(context.Background(), args, &stderr, &stderr)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error naming %q", args, err, tc.want)
		}
	}
}
