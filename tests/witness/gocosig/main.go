// Command gocosig checks a cosigned checkpoint with Go's golang.org/x/mod/sumdb/note, an
// implementation independent of telegate's, for tests/witness.
//
//	gocosig LOG_VKEY WITNESS_VKEY < note
//
// LOG_VKEY is an Ed25519 (type 0x01) note key, handled by note.NewVerifier. WITNESS_VKEY is a
// tlog-cosignature/v1 key (type 0x04), verified here from the C2SP text alone: key ID
// SHA-256(name || "\n" || 0x04 || key)[:4], signature = u64 big-endian timestamp || Ed25519
// signature over "cosignature/v1\ntime <t>\n" || note text. note.Open must accept the note
// with both keys; the output is JSON {"text", "signers", "timestamp"}. Any failure exits 1.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gocosig: "+format+"\n", args...)
	os.Exit(1)
}

type cosigVerifier struct {
	name      string
	hash      uint32
	key       ed25519.PublicKey
	timestamp uint64
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }

func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return false
	}
	var m bytes.Buffer
	fmt.Fprintf(&m, "cosignature/v1\ntime %d\n", t)
	m.Write(msg)
	if !ed25519.Verify(v.key, m.Bytes(), sig[8:]) {
		return false
	}
	v.timestamp = t
	return true
}

func newCosigVerifier(vkey string) *cosigVerifier {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 || len(parts[1]) != 8 {
		fail("malformed witness vkey")
	}
	hash, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		fail("malformed witness key id: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		fail("witness vkey is not a type 0x04 Ed25519 cosignature key")
	}
	h := sha256.New()
	h.Write([]byte(parts[0] + "\n"))
	h.Write(raw)
	if got := binary.BigEndian.Uint32(h.Sum(nil)); got != uint32(hash) {
		fail("witness key id %08x does not match its key (%08x)", hash, got)
	}
	return &cosigVerifier{name: parts[0], hash: uint32(hash), key: ed25519.PublicKey(raw[1:])}
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: gocosig LOG_VKEY WITNESS_VKEY < note")
	}
	logV, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fail("log vkey: %v", err)
	}
	witV := newCosigVerifier(os.Args[2])
	msg, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	n, err := note.Open(msg, note.VerifierList(logV, witV))
	if err != nil {
		fail("%v", err)
	}
	signers := []string{}
	for _, s := range n.Sigs {
		signers = append(signers, s.Name)
	}
	out, _ := json.Marshal(map[string]interface{}{
		"text": n.Text, "signers": signers, "timestamp": witV.timestamp,
	})
	os.Stdout.Write(append(out, '\n'))
}
