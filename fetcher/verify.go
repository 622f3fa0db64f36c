package fetcher

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// checkBlock compares a block with its digest in the manifest, when the
// manifest has per-block digests for this block size. A block that does not
// match is never stored; two mismatches fail the file, since the origin
// serves other bytes than the manifest describes.
func (fl *File) checkBlock(src *source, idx int64, data []byte) error {
	h := fl.spec.BlockHashes
	if h == nil || fl.spec.BlockHashSize != fl.bs {
		return nil
	}
	if idx < int64(len(h)) && sha256.Sum256(data) == h[idx] {
		return nil
	}
	err := fmt.Errorf("%w: %s: block %d does not match its sha256 in the manifest", errBlockHash, fl.spec.Path, idx)
	if src != nil && !src.main {
		return err // the mirror is dropped
	}
	fl.f.mu.Lock()
	fl.hashFailures++
	n := fl.hashFailures
	fl.f.mu.Unlock()
	if n >= 2 {
		return permanent(err)
	}
	return fmt.Errorf("%w: %w", errProtocol, err)
}

// errBlockHash marks a block whose bytes do not match the manifest.
var errBlockHash = errors.New("fetcher: block digest mismatch")

// settle runs after every job of fl: when the file has just become complete
// it checks the whole-file digest (refetching once on a mismatch, failing
// the second time) and reports the outcome through Options.OnDone, once per
// outcome.
func (f *Fetcher) settle(fl *File) {
	f.mu.Lock()
	size, failed, sent, verified := fl.size, fl.err != nil, fl.doneSent, fl.verified
	f.mu.Unlock()
	if sent || (!failed && !fl.complete(size)) {
		return
	}
	if !failed && fl.spec.SHA256 != "" && !verified {
		// One check at a time: workers that finish jobs of the same file
		// together must not count one mismatch twice.
		f.mu.Lock()
		busy := fl.verifying
		fl.verifying = true
		f.mu.Unlock()
		if busy {
			return
		}
		err := f.verify(fl, size)
		f.mu.Lock()
		fl.verifying = false
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
	f.mu.Lock()
	if fl.doneSent {
		f.mu.Unlock()
		return
	}
	fl.doneSent = true
	f.mu.Unlock()
	if f.opts.OnDone != nil {
		f.opts.OnDone(fl.Info())
	}
}

// verify hashes the complete file. On a mismatch it resets the file (the
// first time) or fails it, and returns an error.
func (f *Fetcher) verify(fl *File, size int64) error {
	_, gen, _ := fl.st.Remote()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if f.ctx.Err() != nil {
			return f.ctx.Err()
		}
		n := min(int64(len(buf)), size-off)
		if _, err := fl.st.ReadAt(buf[:n], off); err != nil {
			f.log.Error("reading a complete file to check its sha256", "path", fl.spec.Path, "err", err)
			return err
		}
		h.Write(buf[:n])
		off += n
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sum == fl.spec.SHA256 {
		f.mu.Lock()
		fl.verified = true
		f.mu.Unlock()
		return nil
	}
	err := fmt.Errorf("fetcher: %s: sha256 is %s, the manifest says %s", fl.spec.Path, sum, fl.spec.SHA256)
	f.mu.Lock()
	fl.shaFailures++
	first := fl.shaFailures == 1
	f.mu.Unlock()
	if first {
		f.log.Warn("digest mismatch; refetching the file once, from its main URL", "path", fl.spec.Path, "err", err)
		f.mu.Lock()
		fl.mainOnly = len(fl.srcs) > 1
		f.mu.Unlock()
		if _, rerr := fl.reset(gen, err.Error()); rerr != nil {
			return rerr
		}
		return err
	}
	f.mu.Lock()
	fl.failLocked(permanent(err))
	f.mu.Unlock()
	f.settle(fl)
	return err
}
