package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"ferry/origin"
)

// TestE2EOnComplete runs --on-complete for a file that completes and one
// that fails (404), with the state and the reason in the environment.
func TestE2EOnComplete(t *testing.T) {
	requireFUSE(t)
	srv := origin.New(origin.Options{})
	base := srv.StartTest(t)
	srv.PutGenerated("good.bin", 300000, 1)
	wd := t.TempDir()
	// gone.bin is in the manifest but not on the origin.
	writeManifest(t, filepath.Join(wd, "m.json"), base, map[string]int64{"good.bin": 300000, "gone.bin": 1000})
	mnt := filepath.Join(wd, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(wd, "events.log")
	hook := `printf '%s %s %s %s [%s]\n' "$FERRY_EVENT" "$FERRY_STATE" "$FERRY_RELPATH" "$FERRY_SIZE" "$FERRY_ERROR" >> ` + logPath + `; exit 3`
	pid := mountDaemon(t, wd, "m.json", "mnt", "--cache-dir", "cache", "--on-complete", hook)

	var lines []string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(logPath)
		if lines = strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) >= 2 {
			break
		}
	}
	sort.Strings(lines)
	if len(lines) != 2 || lines[0] != "download complete good.bin 300000 []" ||
		!strings.HasPrefix(lines[1], "download failed gone.bin 1000 [") || !strings.Contains(lines[1], "404") {
		t.Fatalf("--on-complete saw %q", lines)
	}
	// The hook's exit status 3 is logged, not fatal: the mount is still up.
	if _, err := os.Stat(filepath.Join(mnt, "good.bin")); err != nil {
		t.Fatal(err)
	}
	if r := ferry(t, "unmount", mnt); r.code != 0 {
		t.Fatalf("ferry unmount: %s", r.stderr)
	}
	if ws := waitExit(t, pid); ws.ExitStatus() != 0 {
		t.Errorf("daemon exit %v", ws)
	}
	log, _ := os.ReadFile(filepath.Join(wd, "cache", "ferry.log"))
	if !strings.Contains(string(log), "--on-complete failed") {
		t.Errorf("the hook's failure is not in the log:\n%s", log)
	}
}
