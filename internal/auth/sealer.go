package auth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nimbus-build/nimbus/internal/ids"
)

// Sealer encrypts secrets at rest (signing keys, webhook secrets, the
// GitHub App's private key) with AES-256-GCM under a master key. It holds
// several master keys so the key can be rotated: it seals with the first
// and opens with whichever key id a sealed value names.
//
// Master key file: one key per line, "<key id> <base64 of 32 bytes>", the
// first line being the key that seals. Lines starting with # are comments.
type Sealer struct {
	primary string
	aeads   map[string]cipher.AEAD
	order   []string
}

// ErrSealed is returned when a sealed value cannot be opened: corrupt, or
// sealed under a master key this Sealer does not hold.
var ErrSealed = errors.New("cannot open sealed value")

const sealMagic = "nms1"

// MasterKey is one master key.
type MasterKey struct {
	ID  string
	Key []byte // 32 bytes
}

// NewMasterKey makes a random master key.
func NewMasterKey() MasterKey {
	k := make([]byte, 32)
	rand.Read(k)
	return MasterKey{ID: ids.New("mk"), Key: k}
}

// NewSealer builds a Sealer; keys[0] seals.
func NewSealer(keys []MasterKey) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("master key: none given")
	}
	s := &Sealer{primary: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range keys {
		if len(k.Key) != 32 {
			return nil, fmt.Errorf("master key %s: %d bytes, want 32", k.ID, len(k.Key))
		}
		if k.ID == "" || strings.ContainsAny(k.ID, " \t\n") || len(k.ID) > 64 {
			return nil, fmt.Errorf("master key id %q: must be 1-64 characters without spaces", k.ID)
		}
		if _, dup := s.aeads[k.ID]; dup {
			return nil, fmt.Errorf("master key %s: listed twice", k.ID)
		}
		block, _ := aes.NewCipher(k.Key)
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads[k.ID] = aead
		s.order = append(s.order, k.ID)
	}
	return s, nil
}

// PrimaryID is the id of the key that seals.
func (s *Sealer) PrimaryID() string { return s.primary }

// Seal encrypts plaintext. The name is bound as associated data, so a
// sealed value moved to another name does not open.
func (s *Sealer) Seal(name string, plaintext []byte) []byte {
	aead := s.aeads[s.primary]
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	var out bytes.Buffer
	out.WriteString(sealMagic)
	out.WriteByte(byte(len(s.primary)))
	out.WriteString(s.primary)
	out.Write(nonce)
	return aead.Seal(out.Bytes(), nonce, plaintext, []byte(name))
}

// Open decrypts a value made by Seal with the same name.
func (s *Sealer) Open(name string, sealed []byte) ([]byte, error) {
	kid, rest, err := splitSealed(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := s.aeads[kid]
	if !ok {
		return nil, fmt.Errorf("%w: sealed with master key %s, which is not loaded", ErrSealed, kid)
	}
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: too short", ErrSealed)
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: authentication failed", ErrSealed, name)
	}
	return plain, nil
}

// KeyID returns the id of the master key a value is sealed with.
func KeyID(sealed []byte) (string, error) {
	kid, _, err := splitSealed(sealed)
	return kid, err
}

func splitSealed(sealed []byte) (kid string, rest []byte, err error) {
	if len(sealed) < len(sealMagic)+1 || string(sealed[:len(sealMagic)]) != sealMagic {
		return "", nil, fmt.Errorf("%w: not a sealed value", ErrSealed)
	}
	n := int(sealed[len(sealMagic)])
	start := len(sealMagic) + 1
	if len(sealed) < start+n {
		return "", nil, fmt.Errorf("%w: truncated", ErrSealed)
	}
	return string(sealed[start : start+n]), sealed[start+n:], nil
}

// LoadMasterKeys reads a master key file.
func LoadMasterKeys(path string) ([]MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	var keys []MasterKey
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, b64, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("master key file %s line %d: want \"<id> <base64 key>\"", path, i+1)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("master key file %s line %d: key must be 32 bytes of base64", path, i+1)
		}
		keys = append(keys, MasterKey{ID: id, Key: key})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("master key file %s: no keys", path)
	}
	return keys, nil
}

// WriteMasterKeys writes a master key file (mode 0600) atomically.
func WriteMasterKeys(path string, keys []MasterKey) error {
	var b strings.Builder
	b.WriteString("# Nimbus master keys: the first line seals, every line opens. Keep this file secret.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k.ID, base64.StdEncoding.EncodeToString(k.Key))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write master keys: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write master keys: %w", err)
	}
	return nil
}
