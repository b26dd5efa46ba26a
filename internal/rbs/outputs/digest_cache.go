package outputs

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// DigestCache remembers file digests by path and stat data, so unchanged
// outputs are not hashed again on every command. Safe for concurrent use.
type DigestCache struct {
	mu sync.Mutex
	m  map[string]cachedDigest
}

type cachedDigest struct {
	size, mtime, ctime int64
	ino                uint64
	digest             [sha256.Size]byte
}

// Digest returns the SHA-256 and size of the open file f, known as p.
func (c *DigestCache) Digest(p string, f *os.File) ([sha256.Size]byte, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	key := cachedDigest{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys != nil {
		key.ino, key.ctime = sys.Ino, sys.Ctim.Nano()
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]cachedDigest{}
	}
	hit, ok := c.m[p]
	c.mu.Unlock()
	if ok && hit.size == key.size && hit.mtime == key.mtime && hit.ctime == key.ctime && hit.ino == key.ino {
		return hit.digest, hit.size, nil
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	if n != key.size {
		return [sha256.Size]byte{}, 0, fmt.Errorf("%s changed while hashed", p)
	}
	h.Sum(key.digest[:0])
	c.mu.Lock()
	c.m[p] = key
	c.mu.Unlock()
	return key.digest, n, nil
}
