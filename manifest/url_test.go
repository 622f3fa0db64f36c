package manifest

import "testing"

var urlSeeds = []string{
	"http://127.0.0.1:8080/small/f0001", "https://origin.example/data/file-0000001.bin",
	"http://h", "http://h:", "http://:80/x", "http://h:80", "https://h/a b", "https://h/a%20b",
	"https://h/#frag", "https://h/?q=1", "HTTP://h/x", "ftp://h/x", "http://user@h/x",
	"http://[::1]:80/x", "http:///x", "http://h/x~y_z.-", "http://-/", "http://h:99999/",
}

// FuzzPlainURL checks that every URL plainURL takes is one the url.Parse
// check accepts.
func FuzzPlainURL(f *testing.F) {
	for _, u := range urlSeeds {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, u string) {
		if plainURL(u) {
			if msg := parsedURLProblem(u); msg != "" {
				t.Errorf("plainURL(%q) but url.Parse check says %s", u, msg)
			}
		}
	})
}

func TestPlainURL(t *testing.T) {
	for _, tc := range []struct {
		u    string
		want bool
	}{
		{"http://127.0.0.1:8080/small/f0001", true},
		{"https://origin.example/data/file-0000001.bin", true},
		{"http://h", true},
		{"http://h:", false},
		{"http://:80/x", false},
		{"https://h/a%20b", false},
		{"https://h/#frag", false},
		{"https://h/?q=1", false},
		{"HTTP://h/x", false},
		{"http://user@h/x", false},
	} {
		if got := plainURL(tc.u); got != tc.want {
			t.Errorf("plainURL(%q) = %v, want %v", tc.u, got, tc.want)
		}
	}
}
