package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// credentialFileName is the credential's file in the state directory.
const credentialFileName = "credential.json"

// credential is the agent's identity with one server, as saved in
// <StateDir>/credential.json.
type credential struct {
	Server        string    `json:"server"`
	AgentID       string    `json:"agent_id"`
	Org           string    `json:"org"`
	Token         string    `json:"credential"`
	ExpiresAt     time.Time `json:"expires_at"`
	AllowedLabels []string  `json:"allowed_labels"`
	// ObtainedAt is when the agent received it, by its own clock: the
	// lifetime is ExpiresAt - ObtainedAt.
	ObtainedAt time.Time `json:"obtained_at"`
}

func newCredential(server string, e apiv1.Enrolled, now time.Time) credential {
	return credential{
		Server: server, AgentID: e.AgentID, Org: e.Org, Token: e.Credential,
		ExpiresAt: e.ExpiresAt, AllowedLabels: e.AllowedLabels, ObtainedAt: now,
	}
}

// refreshAt is when two thirds of the credential's lifetime have passed.
func (c credential) refreshAt() time.Time {
	return c.ObtainedAt.Add(c.ExpiresAt.Sub(c.ObtainedAt) * 2 / 3)
}

// credentialFile is <StateDir>/credential.json: mode 0600 in a directory of
// mode 0700, replaced atomically.
type credentialFile struct {
	dir string
}

func (f credentialFile) path() string { return filepath.Join(f.dir, credentialFileName) }

// load returns the saved credential; fs.ErrNotExist when there is none.
func (f credentialFile) load() (credential, error) {
	var c credential
	info, err := os.Stat(f.path())
	if err != nil {
		return c, fmt.Errorf("read credential: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		// Like ssh with a private key: a readable secret is not used.
		return c, fmt.Errorf("read credential: %s has mode %04o, it must not be accessible to others: chmod 600 it", f.path(), perm)
	}
	b, err := os.ReadFile(f.path())
	if err != nil {
		return c, fmt.Errorf("read credential: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return c, fmt.Errorf("read credential %s: %w", f.path(), err)
	}
	if c.Token == "" || c.AgentID == "" {
		return c, fmt.Errorf("read credential %s: no credential or agent id in it", f.path())
	}
	return c, nil
}

// save writes c to a temporary file, syncs it and renames it into place,
// so that a crash leaves either the old credential or the new one.
func (f credentialFile) save(c credential) (err error) {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone.
	if err := os.Chmod(f.dir, 0o700); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	tmp, err := os.CreateTemp(f.dir, credentialFileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreNotExist(os.Remove(tmp.Name())))
		}
	}()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return errors.Join(fmt.Errorf("save credential: %w", err), tmp.Close())
	}
	if err := tmp.Sync(); err != nil {
		return errors.Join(fmt.Errorf("save credential: %w", err), tmp.Close())
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path()); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	// Make the rename itself durable.
	d, err := os.Open(f.dir)
	if err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	return errors.Join(d.Sync(), d.Close())
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
