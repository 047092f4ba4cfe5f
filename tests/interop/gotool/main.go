// Command gotool drives Go's golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog,
// an implementation independent of telegate's ledger, for the interoperability tests in
// tests/interop. Every subcommand speaks JSON or plain text over argv, stdin and stdout and
// exits non-zero with a message on stderr when something does not verify.
//
//	gen-key NAME                  {"skey": ..., "vkey": ...}
//	sign-note SKEY                signed note of the text on stdin
//	verify-note VKEY              text of the signed note on stdin, if the key verifies it
//	hashes N                      roots for sizes 1..N and proofs over "go record %d\n"
//	tile L IDX W N                base64 of hash tile (L, IDX, W) of the N-record tree
//	check-proofs                  checks the inclusion/consistency proofs in stdin's JSON
//	                              (one object, or an array of them)
//	tile-paths                    C2SP paths of stdin's JSON [[level, index, width], ...]
//	gen-log N DIR                 writes an N-record C2SP tlog-tiles log into DIR
//	verify-log VKEY DIR           verifies a C2SP tlog-tiles log with tlog.TileHashReader
//
// Records are deterministic: record i is fmt.Sprintf("go record %d\n", i). Hash tiles have
// height 8; C2SP tlog-tiles paths are Go's tile paths without the height element, and entry
// bundles (Go's "data" level) live under tile/entries.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	tileHeight = 8
	logOrigin  = "example.com/go-log"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gotool: "+format+"\n", args...)
	os.Exit(1)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

func atoi(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	check(err, "bad number "+strconv.Quote(s))
	return n
}

func b64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

func hashesB64(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = b64(h)
	}
	return out
}

func parseHash(s, what string) tlog.Hash {
	raw, err := base64.StdEncoding.DecodeString(s)
	check(err, what)
	var h tlog.Hash
	if len(raw) != tlog.HashSize {
		fail("%s: %d bytes, want %d", what, len(raw), tlog.HashSize)
	}
	copy(h[:], raw)
	return h
}

func parseHashes(ss []string, what string) []tlog.Hash {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		out[i] = parseHash(s, fmt.Sprintf("%s[%d]", what, i))
	}
	return out
}

func emit(v interface{}) {
	enc := json.NewEncoder(os.Stdout)
	check(enc.Encode(v), "encode output")
}

func readStdin() []byte {
	data, err := io.ReadAll(os.Stdin)
	check(err, "read stdin")
	return data
}

// record is the deterministic content of record i.
func record(i int64) []byte { return []byte(fmt.Sprintf("go record %d\n", i)) }

// memStore keeps every stored hash of a tree, indexed by tlog.StoredHashIndex.
type memStore []tlog.Hash

func (s *memStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(*s)) {
			return nil, fmt.Errorf("stored hash %d not present (have %d)", x, len(*s))
		}
		out[i] = (*s)[x]
	}
	return out, nil
}

// buildTree appends records 0..n-1 with tlog.StoredHashes and returns the store; roots
// (if non-nil) receives tlog.TreeHash after every append.
func buildTree(n int64, roots *[]tlog.Hash) *memStore {
	s := &memStore{}
	for i := int64(0); i < n; i++ {
		hs, err := tlog.StoredHashes(i, record(i), s)
		check(err, "StoredHashes")
		*s = append(*s, hs...)
		if roots != nil {
			th, err := tlog.TreeHash(i+1, s)
			check(err, "TreeHash")
			*roots = append(*roots, th)
		}
	}
	if int64(len(*s)) != tlog.StoredHashCount(n) {
		fail("stored %d hashes, StoredHashCount says %d", len(*s), tlog.StoredHashCount(n))
	}
	return s
}

// c2spPath turns a Go tile path (tile/H/L/N[.p/W], tile/H/data/N[.p/W]) into the C2SP
// tlog-tiles path (tile/L/N[.p/W], tile/entries/N[.p/W]).
func c2spPath(t tlog.Tile) string {
	prefix := fmt.Sprintf("tile/%d/", t.H)
	p := t.Path()
	if !strings.HasPrefix(p, prefix) {
		fail("unexpected Go tile path %q", p)
	}
	rest := strings.TrimPrefix(p, prefix)
	if strings.HasPrefix(rest, "data/") {
		rest = "entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest
}

// finalTiles lists the hash tiles of a tree of size n: every full tile plus, per level,
// the widest partial tile (tlog.NewTiles also lists every narrower partial width).
func finalTiles(n int64) []tlog.Tile {
	var out []tlog.Tile
	pos := make(map[[2]int64]int)
	for _, t := range tlog.NewTiles(tileHeight, 0, n) {
		k := [2]int64{int64(t.L), t.N}
		if i, ok := pos[k]; ok {
			if t.W > out[i].W {
				out[i] = t
			}
			continue
		}
		pos[k] = len(out)
		out = append(out, t)
	}
	return out
}

func entryBundle(records [][]byte) []byte {
	var buf bytes.Buffer
	for _, r := range records {
		if len(r) > 0xffff {
			fail("record of %d bytes does not fit an entry bundle", len(r))
		}
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(r)))
		buf.Write(l[:])
		buf.Write(r)
	}
	return buf.Bytes()
}

func writeFile(dir, rel string, data []byte) {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	check(os.MkdirAll(filepath.Dir(p), 0o755), "mkdir")
	check(os.WriteFile(p, data, 0o644), "write "+rel)
}

func checkpointText(origin string, n int64, root tlog.Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, n, b64(root))
}

func cmdGenKey(name string) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	check(err, "GenerateKey")
	emit(map[string]string{"skey": skey, "vkey": vkey})
}

func cmdSignNote(skey string) {
	s, err := note.NewSigner(skey)
	check(err, "NewSigner")
	msg, err := note.Sign(&note.Note{Text: string(readStdin())}, s)
	check(err, "Sign")
	_, err = os.Stdout.Write(msg)
	check(err, "write")
}

func cmdVerifyNote(vkey string) {
	v, err := note.NewVerifier(vkey)
	check(err, "NewVerifier")
	n, err := note.Open(readStdin(), note.VerifierList(v))
	check(err, "Open")
	_, err = os.Stdout.WriteString(n.Text)
	check(err, "write")
}

type inclusionOut struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

type consistencyOut struct {
	Old   int64    `json:"old"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

// proofSizes and proofPoints: every pair for small trees, then a spread of edge cases (powers of two
// and their neighbours, first, middle and last leaves) for the larger ones.
func proofSizes(n int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	add := func(t int64) {
		if t >= 1 && t <= n && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	for t := int64(1); t <= 40; t++ {
		add(t)
	}
	for p := int64(64); p <= n; p *= 2 {
		add(p - 1)
		add(p)
		add(p + 1)
	}
	add(n - 1)
	add(n)
	return out
}

func proofPoints(t int64) []int64 {
	if t <= 40 {
		out := make([]int64, t)
		for i := range out {
			out[i] = int64(i)
		}
		return out
	}
	seen := map[int64]bool{}
	var out []int64
	for _, x := range []int64{0, 1, 2, t / 3, t/2 - 1, t / 2, t/2 + 1, t - 3, t - 2, t - 1} {
		if x >= 0 && x < t && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func cmdHashes(n int64) {
	var roots []tlog.Hash
	s := buildTree(n, &roots)
	leaves := make([]string, n)
	for i := int64(0); i < n; i++ {
		leaves[i] = b64(tlog.RecordHash(record(i)))
	}
	var incl []inclusionOut
	var cons []consistencyOut
	for _, t := range proofSizes(n) {
		for _, i := range proofPoints(t) {
			p, err := tlog.ProveRecord(t, i, s)
			check(err, "ProveRecord")
			check(tlog.CheckRecord(p, t, roots[t-1], i, tlog.RecordHash(record(i))), "CheckRecord")
			incl = append(incl, inclusionOut{i, t, hashesB64(p)})
			if m := i + 1; m <= t {
				q, err := tlog.ProveTree(t, m, s)
				check(err, "ProveTree")
				check(tlog.CheckTree(q, t, roots[t-1], m, roots[m-1]), "CheckTree")
				cons = append(cons, consistencyOut{m, t, hashesB64(q)})
			}
		}
	}
	emit(map[string]interface{}{
		"leaf_hashes": leaves,
		"roots":       hashesB64(roots),
		"inclusion":   incl,
		"consistency": cons,
	})
}

func cmdTile(level, index, width, n int64) {
	s := buildTree(n, nil)
	t := tlog.Tile{H: tileHeight, L: int(level), N: index, W: int(width)}
	data, err := tlog.ReadTileData(t, s)
	check(err, "ReadTileData "+t.Path())
	emit(map[string]string{"path": c2spPath(t), "tile": base64.StdEncoding.EncodeToString(data)})
}

type proofsIn struct {
	Size        int64    `json:"size"`
	Root        string   `json:"root"`
	LeafIndex   *int64   `json:"leaf_index"`
	LeafHash    string   `json:"leaf_hash"`
	Inclusion   []string `json:"inclusion"`
	OldSize     *int64   `json:"old_size"`
	OldRoot     string   `json:"old_root"`
	Consistency []string `json:"consistency"`
}

func checkProofs(i int, in proofsIn) int {
	root := parseHash(in.Root, "root")
	checked := 0
	if in.LeafIndex != nil {
		p := tlog.RecordProof(parseHashes(in.Inclusion, "inclusion"))
		err := tlog.CheckRecord(p, in.Size, root, *in.LeafIndex, parseHash(in.LeafHash, "leaf_hash"))
		check(err, fmt.Sprintf("item %d: CheckRecord(index %d, size %d)", i, *in.LeafIndex, in.Size))
		checked++
	}
	if in.OldSize != nil {
		p := tlog.TreeProof(parseHashes(in.Consistency, "consistency"))
		err := tlog.CheckTree(p, in.Size, root, *in.OldSize, parseHash(in.OldRoot, "old_root"))
		check(err, fmt.Sprintf("item %d: CheckTree(old %d, size %d)", i, *in.OldSize, in.Size))
		checked++
	}
	if checked == 0 {
		fail("item %d: nothing to check", i)
	}
	return checked
}

// cmdCheckProofs checks one proofsIn object, or a JSON array of them.
func cmdCheckProofs() {
	data := bytes.TrimSpace(readStdin())
	var items []proofsIn
	if bytes.HasPrefix(data, []byte("[")) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		check(dec.Decode(&items), "decode stdin")
	} else {
		var one proofsIn
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		check(dec.Decode(&one), "decode stdin")
		items = append(items, one)
	}
	checked := 0
	for i, in := range items {
		checked += checkProofs(i, in)
	}
	emit(map[string]int{"checked": checked})
}

// cmdTilePaths maps a JSON array of [level, index, width] (level -1: entry bundle) on
// stdin to the C2SP paths, from Go's own Tile.Path index encoding.
func cmdTilePaths() {
	var coords [][3]int64
	check(json.Unmarshal(readStdin(), &coords), "decode stdin")
	out := make([]string, len(coords))
	for i, c := range coords {
		out[i] = c2spPath(tlog.Tile{H: tileHeight, L: int(c[0]), N: c[1], W: int(c[2])})
	}
	emit(out)
}

func cmdGenLog(n int64, dir string) {
	if n < 1 {
		fail("gen-log needs at least one record")
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, logOrigin)
	check(err, "GenerateKey")
	signer, err := note.NewSigner(skey)
	check(err, "NewSigner")
	s := buildTree(n, nil)
	root, err := tlog.TreeHash(n, s)
	check(err, "TreeHash")

	var paths []string
	for _, t := range finalTiles(n) {
		data, err := tlog.ReadTileData(t, s)
		check(err, "ReadTileData "+t.Path())
		// Every full tile's hash must be its parent's entry (HashFromTile on itself).
		if t.W == 1<<tileHeight {
			h, err := tlog.HashFromTile(t, data, tlog.StoredHashIndex(t.L*tileHeight, t.N<<tileHeight))
			check(err, "HashFromTile")
			if h != (*s)[tlog.StoredHashIndex(t.L*tileHeight, t.N<<tileHeight)] {
				fail("HashFromTile disagrees with the stored hash for %s", t.Path())
			}
		}
		writeFile(dir, c2spPath(t), data)
		paths = append(paths, c2spPath(t))
		if t.L == 0 {
			recs := make([][]byte, t.W)
			for i := range recs {
				recs[i] = record(t.N<<tileHeight + int64(i))
			}
			bt := tlog.Tile{H: tileHeight, L: -1, N: t.N, W: t.W}
			writeFile(dir, c2spPath(bt), entryBundle(recs))
			paths = append(paths, c2spPath(bt))
		}
	}
	msg, err := note.Sign(&note.Note{Text: checkpointText(logOrigin, n, root)}, signer)
	check(err, "Sign")
	writeFile(dir, "checkpoint", msg)
	emit(map[string]interface{}{
		"vkey": vkey, "skey": skey, "origin": logOrigin, "size": n, "root": b64(root),
		"paths": paths,
	})
}

// dirTiles serves tiles of a C2SP tlog-tiles directory to tlog.TileHashReader.
type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return tileHeight }

func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(d.dir, filepath.FromSlash(c2spPath(t))))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func parseCheckpoint(text string) (string, tlog.Tree) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		fail("checkpoint has fewer than three lines")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		fail("malformed checkpoint size %q", lines[1])
	}
	return lines[0], tlog.Tree{N: n, Hash: parseHash(lines[2], "checkpoint root")}
}

func cmdVerifyLog(vkey, dir string) {
	v, err := note.NewVerifier(vkey)
	check(err, "NewVerifier")
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	check(err, "read checkpoint")
	nt, err := note.Open(msg, note.VerifierList(v))
	check(err, "open checkpoint")
	origin, tree := parseCheckpoint(nt.Text)
	if origin != v.Name() {
		fail("checkpoint origin %q is not the key name %q", origin, v.Name())
	}
	// Read every leaf hash through the authenticating tile reader, which checks each tile
	// against the checkpoint's root, and compare it with the entry bundles.
	r := tlog.TileHashReader(tree, dirTiles{dir})
	indexes := make([]int64, tree.N)
	for i := range indexes {
		indexes[i] = tlog.StoredHashIndex(0, int64(i))
	}
	var leaves []tlog.Hash
	if tree.N > 0 {
		leaves, err = r.ReadHashes(indexes)
		check(err, "read leaf hashes from tiles")
	}
	for n := int64(0); n<<tileHeight < tree.N; n++ {
		w := tree.N - n<<tileHeight
		if w > 1<<tileHeight {
			w = 1 << tileHeight
		}
		bt := tlog.Tile{H: tileHeight, L: -1, N: n, W: int(w)}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(c2spPath(bt))))
		check(err, "read entry bundle")
		for i := int64(0); i < w; i++ {
			if len(data) < 2 {
				fail("%s: truncated", c2spPath(bt))
			}
			l := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+l {
				fail("%s: truncated", c2spPath(bt))
			}
			idx := n<<tileHeight + i
			if tlog.RecordHash(data[2:2+l]) != leaves[idx] {
				fail("%s: entry %d does not match the tree", c2spPath(bt), idx)
			}
			data = data[2+l:]
		}
		if len(data) != 0 {
			fail("%s: trailing bytes", c2spPath(bt))
		}
	}
	emit(map[string]interface{}{"origin": origin, "size": tree.N, "root": b64(tree.Hash)})
}

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		fail("usage: gotool gen-key|sign-note|verify-note|hashes|tile|check-proofs|tile-paths|gen-log|verify-log ...")
	}
	need := func(n int) {
		if len(args)-1 != n {
			fail("%s takes %d arguments", args[0], n)
		}
	}
	switch args[0] {
	case "gen-key":
		need(1)
		cmdGenKey(args[1])
	case "sign-note":
		need(1)
		cmdSignNote(args[1])
	case "verify-note":
		need(1)
		cmdVerifyNote(args[1])
	case "hashes":
		need(1)
		cmdHashes(atoi(args[1]))
	case "tile":
		need(4)
		cmdTile(atoi(args[1]), atoi(args[2]), atoi(args[3]), atoi(args[4]))
	case "check-proofs":
		need(0)
		cmdCheckProofs()
	case "tile-paths":
		need(0)
		cmdTilePaths()
	case "gen-log":
		need(2)
		cmdGenLog(atoi(args[1]), args[2])
	case "verify-log":
		need(2)
		cmdVerifyLog(args[1], args[2])
	default:
		fail("unknown subcommand %q", args[0])
	}
}
