//go:build !nokms

package kms

// The providers, which register themselves with sigkms. Building with -tags nokms leaves
// them and their cloud SDKs out (make demo does, to build in a fraction of the time); such
// a binary refuses KMS key references (no provider for them).
import (
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)
