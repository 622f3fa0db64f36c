package uploader

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
)

// tusVersion is the tus protocol version spoken.
const tusVersion = "1.0.0"

// errTusGone reports that the server no longer knows the upload resource.
var errTusGone = errors.New("uploader: the server dropped the tus upload; starting it again")

// errTusConflict reports a PATCH at an offset the server is not at.
var errTusConflict = errors.New("uploader: tus offset conflict")

// sendTus uploads src with tus: creation (unless the record has an upload
// resource already), then HEAD for the server's offset and PATCH from
// there, until the server has every byte.
func (u *Uploader) sendTus(j *job, src *source) (string, error) {
	loc := j.rec.TusURL
	if loc == "" {
		var err error
		loc, err = u.tusCreate(j, src)
		if errors.Is(err, errTusDone) {
			return "", nil
		}
		if err != nil || src.size == 0 {
			return "", err
		}
	}
	for range 3 {
		off, err := u.tusOffset(j, loc)
		if errors.Is(err, errTusGone) {
			u.setTusURL(j, "")
			return "", err
		}
		if err != nil {
			return "", err
		}
		if off == src.size {
			return "", nil
		}
		if off > src.size {
			u.setTusURL(j, "")
			return "", fmt.Errorf("uploader: the tus upload is at %d of %d bytes; starting it again", off, src.size)
		}
		j.it.sent.Store(off)
		done, err := u.tusPatch(j, src, loc, off)
		switch {
		case errors.Is(err, errTusConflict):
			continue // ask for the offset again
		case errors.Is(err, errTusGone):
			u.setTusURL(j, "")
			return "", err
		case err != nil:
			return "", err
		case done:
			return "", nil
		}
	}
	return "", errors.New("uploader: the tus offset keeps moving")
}

// tusCreate creates the upload resource and records its URL.
func (u *Uploader) tusCreate(j *job, src *source) (string, error) {
	target := u.URL(j.rec.Path)
	req, stop, err := u.newRequest(j, http.MethodPost, target, nil)
	if err != nil {
		return "", err
	}
	defer stop()
	req.Header.Set("Tus-Resumable", tusVersion)
	req.Header.Set("Upload-Length", strconv.FormatInt(src.size, 10))
	req.Header.Set("Upload-Metadata", "filename "+b64(path.Base(j.rec.Path))+",sha256 "+b64(string(src.digest)))
	if !u.opts.Overwrite {
		req.Header.Set("If-None-Match", "*")
	}
	if src.size == 0 && j.changed() {
		return "", errChanged // an empty upload is complete once created
	}
	resp, err := u.do(j, req, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
	case http.StatusPreconditionFailed:
		_, err := u.refused(j, target, resp)
		if err == nil {
			err = errTusDone
		}
		return "", err
	default:
		return "", classify(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	loc, err := req.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" || (loc.Scheme != "http" && loc.Scheme != "https") {
		return "", permanent(fmt.Errorf("uploader: tus creation at %s: bad Location %q", target, resp.Header.Get("Location")))
	}
	if loc.Host != req.URL.Host {
		// The manifest's headers would go to another host.
		return "", permanent(fmt.Errorf("uploader: tus creation at %s: the upload lives on another host (%s)", target, loc.Host))
	}
	u.setTusURL(j, loc.String())
	return loc.String(), nil
}

// errTusDone ends an attempt whose content the server has already.
var errTusDone = errors.New("uploader: already on the server")

// tusOffset asks the server how many bytes of the upload it has.
func (u *Uploader) tusOffset(j *job, loc string) (int64, error) {
	req, stop, err := u.newRequest(j, http.MethodHead, loc, nil)
	if err != nil {
		return 0, err
	}
	defer stop()
	req.Header.Set("Tus-Resumable", tusVersion)
	resp, err := u.do(j, req, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
		return 0, errTusGone
	default:
		return 0, classify(resp)
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("uploader: tus HEAD %s: bad Upload-Offset %q", loc, resp.Header.Get("Upload-Offset"))
	}
	return off, nil
}

// tusPatch sends the bytes from off to the end; done reports that the
// server has all of them.
func (u *Uploader) tusPatch(j *job, src *source, loc string, off int64) (done bool, err error) {
	b := &body{r: src.f, off: off, end: src.size, last: src.size, j: j, sent: &j.it.sent}
	req, stop, err := u.newRequest(j, http.MethodPatch, loc, b)
	if err != nil {
		return false, err
	}
	defer stop()
	req.Header.Set("Tus-Resumable", tusVersion)
	req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, err := u.do(j, req, b)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
	case http.StatusConflict:
		return false, errTusConflict
	case http.StatusNotFound, http.StatusGone:
		return false, errTusGone
	case http.StatusPreconditionFailed:
		_, err := u.refused(j, u.URL(j.rec.Path), resp)
		if err == nil {
			return true, nil
		}
		return false, err
	case 460: // Checksum Mismatch
		return false, permanent(fmt.Errorf("uploader: the server says the upload of %s does not match its SHA-256 (HTTP 460 %s)",
			u.URL(j.rec.Path), readMessage(resp.Body)))
	default:
		return false, classify(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	got, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return false, fmt.Errorf("uploader: tus PATCH %s: bad Upload-Offset %q", loc, resp.Header.Get("Upload-Offset"))
	}
	return got == src.size, nil
}

// setTusURL records the upload resource of j's content ("" forgets it).
func (u *Uploader) setTusURL(j *job, loc string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	j.rec.TusURL = loc
	if j.changed() || j.it.removed {
		return
	}
	j.it.rec.TusURL = loc
	u.logPersist(j.it, true)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
