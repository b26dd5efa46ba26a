package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/secrets"
	"github.com/nimbus-build/nimbus/internal/store"
)

// caSecret is the control plane's CA, sealed in the database like every
// other secret, so replicas share it and it never lies on disk in clear.
const caSecret = "pki-ca"

type caFiles struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// loadCA loads the CA from the database, creating it on first use. pki
// reads and writes a CA as files: they pass through a private temporary
// directory that is removed at once.
func loadCA(ctx context.Context, sec *secrets.Store) (*pki.CA, error) {
	dir, err := os.MkdirTemp("", "nimbus-ca-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b, err := sec.Get(ctx, caSecret)
	if err == nil {
		var f caFiles
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, pki.CACertFile), f.Cert, 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, pki.CAKeyFile), f.Key, 0o600); err != nil {
			return nil, err
		}
		return pki.LoadCA(dir)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	ca, err := pki.NewCA("Nimbus CA")
	if err != nil {
		return nil, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, err
	}
	var f caFiles
	if f.Cert, err = os.ReadFile(filepath.Join(dir, pki.CACertFile)); err != nil {
		return nil, err
	}
	if f.Key, err = os.ReadFile(filepath.Join(dir, pki.CAKeyFile)); err != nil {
		return nil, err
	}
	b, _ = json.Marshal(f)
	if err := sec.Put(ctx, caSecret, b); err != nil {
		return nil, err
	}
	// Another replica may have stored its own first: use what is stored.
	return loadCA(ctx, sec)
}
