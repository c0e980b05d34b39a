// Package kms signs with keys held in a cloud KMS or Vault, through sigstore's providers:
// awskms://, gcpkms://, azurekms:// and hashivault:// key references, as cosign takes them.
//
// Only the fleet CLI may import it: it links the cloud SDKs. A test
// (TestAgentDoesNotLinkKMS) fails if the agent or package signing ever depends on it.
// Credentials come from each provider's usual environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS,
// AZURE_*, VAULT_ADDR and VAULT_TOKEN).
package kms

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	sigkms "github.com/sigstore/sigstore/pkg/signature/kms"
)

// The providers register themselves with sigkms, in providers.go.

// Schemes are the key reference prefixes this package handles.
var Schemes = []string{"awskms://", "gcpkms://", "azurekms://", "hashivault://"}

// IsRef reports whether ref names a KMS key rather than a file.
func IsRef(ref string) bool {
	for _, s := range Schemes {
		if strings.HasPrefix(ref, s) {
			return true
		}
	}
	return false
}

// Signer returns a signer for the KMS key ref (ECDSA P-256 with SHA-256, or ed25519 where the
// KMS has it). It contacts the KMS to fetch the public key.
func Signer(ctx context.Context, ref string) (signature.SignerVerifier, error) {
	if !IsRef(ref) {
		return nil, fmt.Errorf("kms: %q is not a KMS key reference (%s)", ref, strings.Join(Schemes, ", "))
	}
	sv, err := sigkms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("kms: open %s: %w", ref, err)
	}
	return sv, nil
}
