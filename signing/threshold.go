package signing

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/wasmfleet/wasmfleet/signing/keys"
)

// role is a verified trust-file role: its keys by id and its threshold.
type role struct {
	name      string
	threshold int
	ids       []string // sorted
	pubs      map[string]crypto.PublicKey
	verifiers map[string]signature.Verifier
}

// verify checks that env carries valid signatures of at least r.threshold distinct keys of
// r, and returns their ids (sorted). what names the document for messages.
func (r *role) verify(env *Envelope, what string) ([]string, error) {
	// The decision: go-securesystemslib's multi-envelope verifier, through sigstore's
	// adapter, with our key ids so that keyid hints are matched and each id counts once.
	providers := make([]ssldsse.Verifier, 0, len(r.ids))
	for _, id := range r.ids {
		providers = append(providers, &sigdsse.VerifierAdapter{SignatureVerifier: r.verifiers[id], Pub: r.pubs[id], PubKeyID: id})
	}
	sslEnv := &ssldsse.Envelope{PayloadType: env.PayloadType, Payload: base64.StdEncoding.EncodeToString(env.Payload)}
	for _, s := range env.Signatures {
		sslEnv.Signatures = append(sslEnv.Signatures, ssldsse.Signature{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
	}
	ev, err := ssldsse.NewMultiEnvelopeVerifier(r.threshold, providers...)
	if err != nil {
		return nil, fail(ErrInvalid, fmt.Sprintf("role %s: threshold %d of %d keys", r.name, r.threshold, len(r.ids)))
	}
	accepted, _, err := ev.VerifyAndDecode(context.Background(), sslEnv)
	if err == nil {
		ids := make([]string, 0, len(accepted))
		for _, a := range accepted {
			ids = append(ids, a.KeyID)
		}
		sort.Strings(ids)
		return ids, nil
	}
	return nil, r.explain(env, what, err)
}

// explain works out why env does not meet r's threshold, checking each signature itself.
func (r *role) explain(env *Envelope, what string, cause error) error {
	pae := ssldsse.PAE(env.PayloadType, env.Payload)
	valid := map[string]int{} // key id -> valid signatures by it
	var tampered, unknown []string
	anonymousBad := 0
	for _, s := range env.Signatures {
		if s.KeyID != "" {
			v, ok := r.verifiers[s.KeyID]
			if !ok {
				unknown = append(unknown, keys.Short(s.KeyID))
				continue
			}
			if verifySig(v, s.Sig, pae) {
				valid[s.KeyID]++
			} else {
				tampered = append(tampered, keys.Short(s.KeyID))
			}
			continue
		}
		found := false
		for _, id := range r.ids {
			if verifySig(r.verifiers[id], s.Sig, pae) {
				valid[id]++
				found = true
				break
			}
		}
		if !found {
			anonymousBad++
		}
	}
	var dups []string
	for id, n := range valid {
		if n > 1 {
			dups = append(dups, keys.Short(id))
		}
	}
	sort.Strings(dups)
	need := fmt.Sprintf("%s needs %d of the %d %s keys", what, r.threshold, len(r.ids), r.name)
	switch {
	case len(dups) > 0 && len(valid) < r.threshold:
		return fail(ErrDuplicateKey, fmt.Sprintf("%s; key %s signed more than once and counts once, so only %d distinct keys signed",
			need, strings.Join(dups, ", "), len(valid)))
	case len(valid) == 0 && len(tampered) > 0:
		return fail(ErrBadSignature, fmt.Sprintf("%s signature by %s key %s does not verify: the %s was changed after it was signed, or the signature is corrupt",
			what, r.name, strings.Join(tampered, ", "), what))
	case len(valid) == 0 && len(unknown) > 0 && anonymousBad == 0:
		return fail(ErrUnknownKey, fmt.Sprintf("%s is signed by key %s, which does not hold the %s role (its keys: %s)",
			what, strings.Join(unknown, ", "), r.name, shortList(r.ids)))
	case len(valid) == 0:
		return fail(ErrBadSignature, fmt.Sprintf("no signature on the %s verifies with a %s key (%s): signed by another key, or changed after signing",
			what, r.name, shortList(r.ids)))
	case len(valid) < r.threshold:
		ids := make([]string, 0, len(valid))
		for id := range valid {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		extra := ""
		if len(unknown) > 0 {
			extra += "; also signed by key " + strings.Join(unknown, ", ") + ", which does not hold the role"
		}
		if len(tampered) > 0 || anonymousBad > 0 {
			extra += fmt.Sprintf("; %d signature(s) do not verify", len(tampered)+anonymousBad)
		}
		return fail(ErrThreshold, fmt.Sprintf("%s, only %d signed (%s)%s; have more keys countersign it",
			need, len(valid), shortList(ids), extra))
	}
	// Our count says enough but the verifier refused: report its reason.
	return failWrap(ErrThreshold, need, cause)
}

func verifySig(v signature.Verifier, sig, msg []byte) bool {
	return v.VerifySignature(strings.NewReader(string(sig)), strings.NewReader(string(msg))) == nil
}

func shortList(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = keys.Short(id)
	}
	return strings.Join(s, ", ")
}
