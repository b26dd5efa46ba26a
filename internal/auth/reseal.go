package auth

import (
	"context"
	"fmt"

	"github.com/nimbus-build/nimbus/internal/store"
)

// SecretName is the associated data a named secret is sealed under.
func SecretName(name string) string { return "secret/" + name }

// Reseal re-encrypts every sealed value in the store with the sealer's
// primary master key, in one transaction, so that an old master key can be
// dropped afterwards. It returns how many values it resealed.
func Reseal(ctx context.Context, st store.Store, s *Sealer) (int, error) {
	n := 0
	err := st.InTx(ctx, func(r store.Repos) error {
		n = 0
		keys, err := r.Keys().ListSigningKeys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			kid, err := KeyID(k.PrivateSealed)
			if err != nil {
				return fmt.Errorf("signing key %s: %w", k.ID, err)
			}
			if kid == s.PrimaryID() {
				continue
			}
			name := "signing-key/" + k.ID
			plain, err := s.Open(name, k.PrivateSealed)
			if err != nil {
				return err
			}
			k.PrivateSealed = s.Seal(name, plain)
			if err := r.Keys().UpdateSigningKey(ctx, k); err != nil {
				return err
			}
			n++
		}
		secrets, err := r.Keys().ListSecrets(ctx)
		if err != nil {
			return err
		}
		for _, sec := range secrets {
			kid, err := KeyID(sec.Sealed)
			if err != nil {
				return fmt.Errorf("secret %s: %w", sec.Name, err)
			}
			if kid == s.PrimaryID() {
				continue
			}
			plain, err := s.Open(SecretName(sec.Name), sec.Sealed)
			if err != nil {
				return err
			}
			sec.Sealed = s.Seal(SecretName(sec.Name), plain)
			if err := r.Keys().PutSecret(ctx, sec); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
