package serving

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/seer-ml/seer/features"
)

// This file decodes the bodies of /v1/predict and /v1/features without
// reflection. The body is read once into a string; a strict JSON reader
// walks it, and every key, entity id and string value without escapes is a
// substring of it, so that decoding allocates next to nothing. Request
// features are kept as spans of the body until the query's model is known,
// then typed by its plan directly (no map[string]any, no json.Number).
//
// The language accepted and the errors given are those of the
// encoding/json decoder the handlers used before (FuzzDecodeRequest holds
// the two to the same outcome):
//   - a syntax error says at which byte (counted from 1) and what it found,
//     and wins over every other error in the body;
//   - then the first bad entity map (context or entities), which stops
//     decoding;
//   - then the first value of the wrong JSON type, named by its field path
//     ("queries.candidates.id"), or the first unknown field;
//   - field names match case-insensitively; a field given twice decodes
//     into the same value again (lists element by element, objects merged);
//     null leaves a string or bool alone and empties a list or an object;
//   - anything but spaces after the body's value is an error.
//
// The one difference: encoding/json accepted a stray '}' or ']' after the
// body's value, which is trailing data like any other.

// maxNesting bounds how deeply arrays and objects nest, as in encoding/json.
const maxNesting = 10000

// reader is a strict JSON reader over a whole body. Its methods read one
// token or value at r.i and return false after recording a syntax error in
// r.syn; the reader then stops.
type reader struct {
	s     string
	i     int
	depth int    // arrays and objects open
	stack []byte // the containers skip has open
	syn   string // the syntax error, as "malformed JSON..."
}

func (r *reader) space() {
	for r.i < len(r.s) {
		switch r.s[r.i] {
		case ' ', '\t', '\r', '\n':
			r.i++
		default:
			return
		}
	}
}

// invalid records a syntax error at the byte at r.i, in encoding/json's
// words.
func (r *reader) invalid(context string) bool {
	if r.i >= len(r.s) {
		return r.unexpectedEnd()
	}
	r.syn = fmt.Sprintf("malformed JSON at byte %d: invalid character %s %s", r.i+1, quoteChar(r.s[r.i]), context)
	return false
}

func (r *reader) unexpectedEnd() bool {
	r.syn = "malformed JSON: unexpected end"
	return false
}

// quoteChar formats c as encoding/json's syntax errors do.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// start returns the first byte of the value at r.i, after spaces, or
// records a syntax error when there is no value.
func (r *reader) start() (byte, bool) {
	r.space()
	if r.i >= len(r.s) {
		return 0, r.unexpectedEnd()
	}
	c := r.s[r.i]
	switch c {
	case '{', '[', '"', '-', 't', 'f', 'n', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return c, true
	}
	return 0, r.invalid("looking for beginning of value")
}

// kindName names the JSON kind of the value that starts with c, as
// encoding/json's type errors do.
func kindName(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func (r *reader) enter() bool {
	r.depth++
	if r.depth > maxNesting {
		return r.invalid("exceeded max depth")
	}
	return true
}

// object reads the object at r.i, calling member for each key with r.i at
// the start of the member's value, which member must read.
func (r *reader) object(member func(key string) bool) bool {
	if !r.enter() {
		return false
	}
	r.i++
	r.space()
	if r.i < len(r.s) && r.s[r.i] == '}' {
		r.i++
		r.depth--
		return true
	}
	for {
		key, ok := r.key()
		if !ok {
			return false
		}
		if _, ok := r.start(); !ok {
			return false
		}
		if !member(key) {
			return false
		}
		r.space()
		if r.i >= len(r.s) {
			return r.unexpectedEnd()
		}
		switch r.s[r.i] {
		case ',':
			r.i++
			r.space()
			continue
		case '}':
			r.i++
			r.depth--
			return true
		}
		return r.invalid("after object key:value pair")
	}
}

// key reads an object key and the colon after it.
func (r *reader) key() (string, bool) {
	if r.i >= len(r.s) {
		return "", r.unexpectedEnd()
	}
	if r.s[r.i] != '"' {
		return "", r.invalid("looking for beginning of object key string")
	}
	k, ok := r.str(true)
	if !ok {
		return "", false
	}
	r.space()
	if r.i >= len(r.s) {
		return "", r.unexpectedEnd()
	}
	if r.s[r.i] != ':' {
		return "", r.invalid("after object key")
	}
	r.i++
	return k, true
}

// array reads the array at r.i, calling elem for each element with r.i at
// its start; elem must read it. It returns the number of elements.
func (r *reader) array(elem func(i int) bool) (int, bool) {
	if !r.enter() {
		return 0, false
	}
	r.i++
	r.space()
	if r.i < len(r.s) && r.s[r.i] == ']' {
		r.i++
		r.depth--
		return 0, true
	}
	for n := 0; ; {
		if _, ok := r.start(); !ok {
			return n, false
		}
		if !elem(n) {
			return n, false
		}
		n++
		r.space()
		if r.i >= len(r.s) {
			return n, r.unexpectedEnd()
		}
		switch r.s[r.i] {
		case ',':
			r.i++
			continue
		case ']':
			r.i++
			r.depth--
			return n, true
		}
		return n, r.invalid("after array element")
	}
}

// str reads the string whose opening quote is at r.i. When decode is set
// it returns the string's text: a substring of the body unless the string
// holds escapes or invalid UTF-8, which is decoded as encoding/json does
// (invalid bytes and lone surrogates become U+FFFD).
func (r *reader) str(decode bool) (string, bool) {
	s := r.s
	start := r.i + 1
	for i := start; i < len(s); i++ {
		c := s[i]
		if c == '"' {
			r.i = i + 1
			return s[start:i], true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return r.strSlow(start, i, decode)
		}
	}
	r.i = len(s)
	return "", r.unexpectedEnd()
}

func (r *reader) strSlow(start, i int, decode bool) (string, bool) {
	s := r.s
	plain := true // the text is the string's bytes
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			r.i = i + 1
			if plain || !decode {
				return s[start:i], true
			}
			return unescape(s[start:i]), true
		case c == '\\':
			plain = false
			i++
			if i >= len(s) {
				r.i = i
				return "", r.unexpectedEnd()
			}
			switch s[i] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				i++
			case 'u':
				i++
				for range 4 {
					if i >= len(s) {
						r.i = i
						return "", r.unexpectedEnd()
					}
					if unhex(s[i]) < 0 {
						r.i = i
						return "", r.invalid(`in \u hexadecimal character escape`)
					}
					i++
				}
			default:
				r.i = i
				return "", r.invalid("in string escape code")
			}
		case c < 0x20:
			r.i = i
			return "", r.invalid("in string literal")
		case c < utf8.RuneSelf:
			i++
		default:
			rr, size := utf8.DecodeRuneInString(s[i:])
			if rr == utf8.RuneError && size == 1 {
				plain = false
			}
			i += size
		}
	}
	r.i = i
	return "", r.unexpectedEnd()
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// unescape decodes the text of a valid JSON string (without its quotes)
// exactly as encoding/json does.
func unescape(s string) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			r++
			switch e := s[r]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r-1:])
				r += 5
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						b = utf8.AppendRune(b, dec)
						r += 6
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, e)
			}
			r++
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRuneInString(s[r:])
			b = utf8.AppendRune(b, rr)
			r += size
		}
	}
	return string(b)
}

// getu4 decodes the \uXXXX escape at the start of s, or returns -1.
func getu4(s string) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range []byte(s[2:6]) {
		h := unhex(c)
		if h < 0 {
			return -1
		}
		r = r*16 + h
	}
	return r
}

// number reads the number at r.i.
func (r *reader) number() bool {
	s, i := r.s, r.i
	if s[i] == '-' {
		i++
		if i >= len(s) {
			r.i = i
			return r.unexpectedEnd()
		}
		if !isDigit(s[i]) {
			r.i = i
			return r.invalid("in numeric literal")
		}
	}
	if s[i] == '0' {
		i++
	} else {
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) {
			r.i = i
			return r.unexpectedEnd()
		}
		if !isDigit(s[i]) {
			r.i = i
			return r.invalid("after decimal point in numeric literal")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) {
			r.i = i
			return r.unexpectedEnd()
		}
		if !isDigit(s[i]) {
			r.i = i
			return r.invalid("in exponent of numeric literal")
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	r.i = i
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// literal reads true, false or null, the one starting at r.i.
func (r *reader) literal() bool {
	var word string
	switch r.s[r.i] {
	case 't':
		word = "true"
	case 'f':
		word = "false"
	default:
		word = "null"
	}
	for k := 1; k < len(word); k++ {
		j := r.i + k
		if j >= len(r.s) {
			r.i = j
			return r.unexpectedEnd()
		}
		if r.s[j] != word[k] {
			r.i = j
			return r.invalid("in literal " + word + " (expecting " + quoteChar(word[k]) + ")")
		}
	}
	r.i += len(word)
	return true
}

// skip reads over the value at r.i, checking it, without recursion.
func (r *reader) skip() bool {
	base := len(r.stack)
	for {
		c, ok := r.start()
		if !ok {
			return false
		}
		switch c {
		case '{', '[':
			if !r.enter() {
				return false
			}
			r.i++
			r.space()
			if c == '{' && r.i < len(r.s) && r.s[r.i] == '}' || c == '[' && r.i < len(r.s) && r.s[r.i] == ']' {
				r.i++
				r.depth--
				break
			}
			r.stack = append(r.stack, c)
			if c == '{' {
				if _, ok := r.key(); !ok {
					return false
				}
			}
			continue
		case '"':
			if _, ok := r.str(false); !ok {
				return false
			}
		case 't', 'f', 'n':
			if !r.literal() {
				return false
			}
		default:
			if !r.number() {
				return false
			}
		}
		// After a value: close what ends here, then go on to the next.
		for {
			if len(r.stack) == base {
				return true
			}
			r.space()
			if r.i >= len(r.s) {
				return r.unexpectedEnd()
			}
			top := r.stack[len(r.stack)-1]
			c := r.s[r.i]
			if c == ',' {
				r.i++
				if top == '{' {
					r.space()
					if _, ok := r.key(); !ok {
						return false
					}
				}
				break
			}
			if top == '{' && c == '}' || top == '[' && c == ']' {
				r.i++
				r.depth--
				r.stack = r.stack[:len(r.stack)-1]
				continue
			}
			if top == '{' {
				return r.invalid("after object key:value pair")
			}
			return r.invalid("after array element")
		}
	}
}

// The request bodies, decoded. A list keeps every element decoded since
// it was last emptied and a length, the way encoding/json decodes into a
// slice: a field given twice decodes its elements into the ones before.
type (
	request struct {
		buf        []byte // the body as read
		body       string // the body: decoded strings are substrings of it
		debug      bool
		onDegraded string     // as given ("" when not), checked when the queries are built
		queries    []rawQuery // the body's queries are queries[:nq]
		nq         int

		// Memory for the reader and for building queries.
		stack   []byte
		slots   []slot
		touched []int
		cands   []features.Candidate
		floats  []float64
		cells   []features.Cell
		out     []byte
	}
	rawQuery struct {
		id, model  string
		debug      bool
		onDegraded string // as in request
		context    entities
		features   spans // /v1/predict: the request feature objects
		typed      map[string]features.Value
		names      []string // /v1/features: names[:nn] are the features to read
		nn         int
		cands      []rawCandidate // cands[:nc] are the query's candidates
		nc         int
	}
	rawCandidate struct {
		id       string
		entities entities
		features spans
		typed    map[string]features.Value
	}
	// entities is an entity map of a query or candidate; set when given,
	// even as null or {}.
	entities struct {
		m   map[string]string
		set bool
	}
	// spans are the request feature objects of a query or candidate, in
	// the order given (a repeated field merges into the one before).
	spans struct {
		one  span
		more []span
		n    int
	}
	span struct{ start, end int }
	// slot is where the last value given for a plan input is in the body.
	slot struct {
		span
		set bool
	}
)

func (sp *spans) add(s span) {
	if sp.n == 0 {
		sp.one = s
	} else {
		sp.more = append(sp.more, s)
	}
	sp.n++
}

func (sp *spans) reset() {
	sp.n = 0
	sp.more = sp.more[:0]
}

func (sp *spans) at(i int) span {
	if i == 0 {
		return sp.one
	}
	return sp.more[i-1]
}

// reset marks e unset; its map is kept uncleared, since only a set map is
// read and decoding clears it before it fills it again (clearing it here
// too was a second clear of every candidate's map per request).
func (e *entities) reset() {
	if len(e.m) > keepMapLen {
		e.m = nil
	}
	e.set = false
}

// emptied returns m emptied, or nil when it grew too large to keep.
func emptied[M ~map[K]V, K comparable, V any](m M) M {
	if len(m) > keepMapLen {
		return nil
	}
	clear(m)
	return m
}

func (q *rawQuery) reset() {
	q.id, q.model, q.debug, q.onDegraded = "", "", false, ""
	q.context.reset()
	q.features.reset()
	q.typed = emptied(q.typed)
	clear(q.names)
	q.names, q.nn = q.names[:0], 0
	for i := range q.cands {
		q.cands[i].reset()
	}
	q.cands, q.nc = q.cands[:0], 0
}

func (c *rawCandidate) reset() {
	c.id = ""
	c.entities.reset()
	c.features.reset()
	c.typed = emptied(c.typed)
}

// Limits on what a pooled request keeps for the next one: maps of more
// entries are dropped, and requests whose memory grew past keepBytes
// (roughly counted) are left to the collector.
const (
	keepMapLen = 16
	keepBytes  = 4 << 20
)

// preallocBytes bounds the buffer made for a body from its declared length.
const preallocBytes = 1 << 20

var requests = sync.Pool{New: func() any { return new(request) }}

func newRequest() *request { return requests.Get().(*request) }

// release empties the request and keeps it for another, unless it grew
// too large to keep.
func (req *request) release() {
	if req.empty() {
		requests.Put(req)
	}
}

// empty empties the request, keeping its memory, and reports whether that
// memory is small enough to keep.
func (req *request) empty() bool {
	// Roughly: a cell holds a Value (88 bytes), a candidate its maps.
	n := cap(req.buf) + cap(req.out) + 8*cap(req.floats) + 96*cap(req.cells) + 16*cap(req.cands) + 256*cap(req.queries)
	for i := range req.queries {
		q := &req.queries[i]
		q.reset()
		n += 1024 * cap(q.cands)
	}
	clear(req.cands)
	clear(req.cells)
	req.cands, req.cells, req.floats = req.cands[:0], req.cells[:0], req.floats[:0]
	req.body, req.debug, req.onDegraded, req.nq = "", false, "", 0
	req.queries = req.queries[:0]
	req.out = req.out[:0]
	return n <= keepBytes
}

// readBody reads a request body of at most the configured size.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, req *request) error {
	limit := s.cfg.Predict.MaxBodyBytes
	body := http.MaxBytesReader(w, r.Body, limit)
	buf := req.buf[:0]
	// Trust a declared length up to a point: a slow client must not make
	// seer hold the whole limit before it sends anything.
	if n := min(r.ContentLength, limit, preallocBytes); n > 0 && int(n) >= cap(buf) {
		buf = make([]byte, 0, n+1) // +1: the read that sees the end needs room
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			req.buf = buf
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return kindError(ErrTooLarge, "body is over the limit of %d bytes", tooBig.Limit)
			}
			return badRequest("read body: %v", err)
		}
	}
	req.buf = buf
	req.body = string(buf)
	return nil
}

// bodyKind says which endpoint's body a decoder reads.
type bodyKind uint8

const (
	predictBody bodyKind = iota
	featuresBody
)

// Go type names of the request bodies' parts, which type errors name as
// encoding/json did.
var typeNames = [...]struct{ request, queries, query string }{
	predictBody:  {"serving.predictRequest", "[]serving.predictQuery", "serving.predictQuery"},
	featuresBody: {"serving.featuresRequest", "[]serving.featuresQuery", "serving.featuresQuery"},
}

// limits are the most queries, and candidates per query, a body may hold;
// 0 is no limit.
type limits struct{ queries, candidates int }

// decoder decodes one body into a request.
type decoder struct {
	r     reader
	req   *request
	kind  bodyKind
	lim   limits
	over  string // a limit passed: decoding stopped there, at once
	stop  string // the first bad entity map: decoding stopped there
	saved string // the first value of the wrong type, or unknown field
	// Where the reader is, for the paths of unknown fields: in query qi
	// when depth >= 1, in its candidate ci when depth == 2.
	depth, qi, ci int
}

// decode decodes the body read into req. Errors wrap ErrBadRequest. A
// query or candidate past lim stops decoding where it starts, so that
// refusing a body of a million candidates costs no more than one of
// lim's.
func (req *request) decode(kind bodyKind, lim limits) error {
	d := decoder{r: reader{s: req.body, stack: req.stack[:0]}, req: req, kind: kind, lim: lim}
	msg := d.body()
	req.stack = d.r.stack
	if msg != "" {
		return badRequest("%s", msg)
	}
	return nil
}

// body decodes the whole body and returns what is wrong with it, if
// anything.
func (d *decoder) body() string {
	r := &d.r
	r.space()
	if r.i >= len(r.s) {
		return "body: empty"
	}
	ok := true
	switch c := r.s[r.i]; c {
	case '{':
		ok = d.requestObject()
	case 'n':
		ok = r.literal()
	default:
		if _, ok = r.start(); ok {
			// A scalar ends where its text does: what follows is not read.
			d.mismatch("", typeNames[d.kind].request, c)
			if c == '[' {
				ok = r.skip()
			} else {
				ok = d.scalar(c)
			}
		}
	}
	switch {
	case d.over != "":
		return d.over // no look at the rest of the body: that is the point
	case !ok && r.syn != "":
		return "body: " + r.syn
	case d.stop != "":
		// A syntax error anywhere in the body wins.
		v := reader{s: r.s}
		v.space()
		if !v.skip() && v.syn != "" {
			return "body: " + v.syn
		}
		return "body: " + d.stop
	case d.saved != "":
		return d.saved
	}
	r.space()
	if r.i < len(r.s) {
		return "body: data after the JSON object"
	}
	return ""
}

// scalar reads over the string, number or literal at r.i.
func (d *decoder) scalar(c byte) bool {
	switch c {
	case '"':
		_, ok := d.r.str(false)
		return ok
	case 't', 'f', 'n':
		return d.r.literal()
	}
	return d.r.number()
}

// mismatch records a value of JSON kind c where the field at path wants
// Go type typ.
func (d *decoder) mismatch(path, typ string, c byte) {
	if d.saved != "" {
		return
	}
	if path == "" {
		path = "body"
	}
	d.saved = path + ": want " + typ + ", got JSON " + kindName(c)
}

// wrong records a mismatch and reads over the value.
func (d *decoder) wrong(path, typ string, c byte) bool {
	d.mismatch(path, typ, c)
	return d.r.skip()
}

// unknown records an unknown field, named by its path
// (queries[0].candidates[2].x), and reads over its value.
func (d *decoder) unknown(key string) bool {
	if d.saved == "" {
		var path string
		switch d.depth {
		case 1:
			path = "queries[" + strconv.Itoa(d.qi) + "]."
		case 2:
			path = "queries[" + strconv.Itoa(d.qi) + "].candidates[" + strconv.Itoa(d.ci) + "]."
		}
		d.saved = path + fieldText(key) + ": unknown field"
	}
	return d.r.skip()
}

// fieldText writes a field name in a path: as it is when it is made of
// letters, digits and underscores, else quoted.
func fieldText(key string) string {
	for i := range len(key) {
		c := key[i]
		if !(c == '_' || isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return strconv.Quote(key)
		}
	}
	if key == "" {
		return `""`
	}
	return key
}

// fieldName returns the one of names that key is, exactly or else as
// encoding/json matches names, or "".
func fieldName(key string, names ...string) string {
	for _, n := range names {
		if key == n {
			return n
		}
	}
	for _, n := range names {
		if strings.EqualFold(key, n) {
			return n
		}
	}
	return ""
}

func (d *decoder) requestObject() bool {
	return d.r.object(func(key string) bool {
		switch fieldName(key, "queries", "debug", "on_degraded") {
		case "queries":
			return d.queries()
		case "debug":
			if d.kind == predictBody {
				return d.boolean(&d.req.debug, "debug")
			}
		case "on_degraded":
			return d.text(&d.req.onDegraded, "on_degraded")
		}
		return d.unknown(key)
	})
}

// boolean decodes a bool field; null leaves it alone.
func (d *decoder) boolean(dst *bool, path string) bool {
	r := &d.r
	switch c := r.s[r.i]; c {
	case 't', 'f':
		*dst = c == 't'
		return r.literal()
	case 'n':
		return r.literal()
	default:
		return d.wrong(path, "bool", c)
	}
}

// text decodes a string field; null leaves it alone.
func (d *decoder) text(dst *string, path string) bool {
	r := &d.r
	switch c := r.s[r.i]; c {
	case '"':
		s, ok := r.str(true)
		*dst = s
		return ok
	case 'n':
		return r.literal()
	default:
		return d.wrong(path, "string", c)
	}
}

func (d *decoder) queries() bool {
	r, req := &d.r, d.req
	switch c := r.s[r.i]; c {
	case '[':
		n, ok := r.array(func(i int) bool {
			if d.lim.queries > 0 && i >= d.lim.queries {
				d.over = fmt.Sprintf("queries: more than the limit of %d", d.lim.queries)
				return false
			}
			if i == len(req.queries) {
				req.queries = grown(req.queries)
			}
			switch c := r.s[r.i]; c {
			case '{':
				d.depth, d.qi = 1, i
				ok := d.query(&req.queries[i])
				d.depth = 0
				return ok
			case 'n':
				return r.literal()
			default:
				return d.wrong("queries", typeNames[d.kind].query, c)
			}
		})
		req.nq = n
		if ok && n == 0 {
			req.queries = dropped(req.queries)
		}
		return ok
	case 'n':
		req.queries, req.nq = dropped(req.queries), 0
		return r.literal()
	default:
		return d.wrong("queries", typeNames[d.kind].queries, c)
	}
}

// dropped empties a list whose elements the body dropped, as encoding/json
// does for an empty list or null: elements decoded before do not come back.
func dropped[T any, P interface {
	*T
	reset()
}](s []T) []T {
	for i := range s {
		P(&s[i]).reset()
	}
	return s[:0]
}

// grown returns s with one more element, reusing (and emptying) one that
// a pooled request left beyond its length.
func grown[T any, P interface {
	*T
	reset()
}](s []T) []T {
	if len(s) < cap(s) {
		s = s[:len(s)+1]
		P(&s[len(s)-1]).reset()
		return s
	}
	var zero T
	return append(s, zero)
}

func (d *decoder) query(q *rawQuery) bool {
	return d.r.object(func(key string) bool {
		switch fieldName(key, "id", "model", "context", "features", "candidates", "debug", "on_degraded") {
		case "id":
			return d.text(&q.id, "queries.id")
		case "model":
			if d.kind == predictBody {
				return d.text(&q.model, "queries.model")
			}
		case "context":
			return d.entities(&q.context)
		case "features":
			if d.kind == featuresBody {
				return d.names(q)
			}
			return d.features(&q.features, "queries.features")
		case "candidates":
			return d.candidates(q)
		case "debug":
			if d.kind == predictBody {
				return d.boolean(&q.debug, "queries.debug")
			}
		case "on_degraded":
			return d.text(&q.onDegraded, "queries.on_degraded")
		}
		return d.unknown(key)
	})
}

func (d *decoder) candidates(q *rawQuery) bool {
	r := &d.r
	switch c := r.s[r.i]; c {
	case '[':
		n, ok := r.array(func(i int) bool {
			if d.lim.candidates > 0 && i >= d.lim.candidates {
				d.over = fmt.Sprintf("queries[%d].candidates: more than the limit of %d", d.qi, d.lim.candidates)
				return false
			}
			if i == len(q.cands) {
				q.cands = grown(q.cands)
			}
			switch c := r.s[r.i]; c {
			case '{':
				d.depth, d.ci = 2, i
				ok := d.candidate(&q.cands[i])
				d.depth = 1
				return ok
			case 'n':
				return r.literal()
			default:
				return d.wrong("queries.candidates", "serving.candidate", c)
			}
		})
		q.nc = n
		if ok && n == 0 {
			q.cands = dropped(q.cands)
		}
		return ok
	case 'n':
		q.cands, q.nc = dropped(q.cands), 0
		return r.literal()
	default:
		return d.wrong("queries.candidates", "[]serving.candidate", c)
	}
}

func (d *decoder) candidate(c *rawCandidate) bool {
	return d.r.object(func(key string) bool {
		switch fieldName(key, "id", "entities", "features") {
		case "id":
			return d.text(&c.id, "queries.candidates.id")
		case "entities":
			return d.entities(&c.entities)
		case "features":
			return d.features(&c.features, "queries.candidates.features")
		}
		return d.unknown(key)
	})
}

// features records where an object of request features is; null empties
// what was given before.
func (d *decoder) features(sp *spans, path string) bool {
	r := &d.r
	switch c := r.s[r.i]; c {
	case '{':
		start := r.i
		if !r.skip() {
			return false
		}
		sp.add(span{start, r.i})
		return true
	case 'n':
		sp.reset()
		return r.literal()
	default:
		return d.wrong(path, "map[string]interface {}", c)
	}
}

// names decodes the list of feature names of a /v1/features query.
func (d *decoder) names(q *rawQuery) bool {
	r := &d.r
	switch c := r.s[r.i]; c {
	case '[':
		n, ok := r.array(func(i int) bool {
			if i == len(q.names) {
				q.names = append(q.names, "")
			}
			return d.text(&q.names[i], "queries.features")
		})
		q.nn = n
		if ok && n == 0 {
			clear(q.names)
			q.names = q.names[:0]
		}
		return ok
	case 'n':
		clear(q.names)
		q.names, q.nn = q.names[:0], 0
		return r.literal()
	default:
		return d.wrong("queries.features", "[]string", c)
	}
}

// entities decodes an entity map: entity type to id, an id being a
// non-empty string or an integer. The map is replaced, not merged, when
// given twice; null gives an empty map. A bad map stops decoding.
func (d *decoder) entities(e *entities) bool {
	r := &d.r
	switch r.s[r.i] {
	case '{':
		if e.m == nil {
			e.m = make(map[string]string, 1)
		} else {
			clear(e.m)
		}
		e.set = true
		// Ids are checked as they come; when a key repeats, the last value
		// counts and an earlier bad one is no error, so then the object is
		// read again, raw values first.
		start, n, bad := r.i, 0, ""
		ok := r.object(func(key string) bool {
			vstart := r.i
			if !r.skip() {
				return false
			}
			n++
			id, msg := entityID(key, r.s[vstart:r.i])
			if msg != "" && bad == "" {
				bad = msg
			}
			e.m[key] = id
			return true
		})
		if !ok {
			return false
		}
		if n > len(e.m) {
			end := r.i
			r.i = start
			clear(e.m)
			r.object(func(key string) bool {
				vstart := r.i
				r.skip()
				e.m[key] = r.s[vstart:r.i]
				return true
			})
			r.i, bad = end, ""
			for k, raw := range e.m {
				id, msg := entityID(k, raw)
				if msg != "" {
					bad = msg
					break
				}
				e.m[k] = id
			}
		}
		if bad != "" {
			return d.halt(bad)
		}
		return true
	case 'n':
		clear(e.m)
		e.set = true
		return r.literal()
	default:
		if !r.skip() {
			return false
		}
		return d.halt("entities: want an object of entity type to id")
	}
}

// entityID returns the id a raw JSON value gives the entity type key, or
// what is wrong with it: an id must be a string or an integer, and pass
// features.CheckID.
func entityID(key, raw string) (id, msg string) {
	switch {
	case raw[0] == '"':
		v := reader{s: raw}
		if id, _ = v.str(true); id == "" {
			return "", fmt.Sprintf("entity %s: want a non-empty id", key)
		}
	case isInteger(raw):
		id = raw
	default:
		return "", fmt.Sprintf("entity %s: want a string or integer id, got %s", key, truncateText(raw, 40))
	}
	if err := features.CheckID(id); err != nil {
		return "", fmt.Sprintf("entity %s: %v", key, err)
	}
	return id, ""
}

// halt records a bad entity map and stops decoding.
func (d *decoder) halt(msg string) bool {
	d.stop = msg
	return false
}

// isInteger reports whether s is -?[0-9]+.
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := range len(s) {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// query returns queries[i] as a features.Query for the plan p, with its
// request features typed by the plan's inputs: features p does not read
// are ignored and null counts as not given. For /v1/features, only the
// candidates carry request features.
func (req *request) query(p *features.Plan, i int) (features.Query, error) {
	q := &req.queries[i]
	var fq features.Query
	if q.context.set {
		fq.Context = q.context.m
	}
	var err error
	if fq.Features, err = req.typed(p, &q.typed, &q.features, i, -1); err != nil {
		return fq, err
	}
	if q.nc == 0 {
		return fq, nil
	}
	start := len(req.cands)
	req.cands = slices.Grow(req.cands, q.nc)[:start+q.nc]
	fq.Candidates = req.cands[start : start+q.nc : start+q.nc]
	clear(fq.Candidates)
	for j := range q.nc {
		c, fc := &q.cands[j], &fq.Candidates[j]
		if c.entities.set {
			fc.Entities = c.entities.m
		}
		if fc.Features, err = req.typed(p, &c.typed, &c.features, i, j); err != nil {
			return fq, err
		}
	}
	return fq, nil
}

// typed types the request features in sp by p's inputs, into the map *m
// (made when needed, emptied first). For a name given more than once, the
// last value counts. Errors name query i and candidate j (-1: the query's
// own features).
func (req *request) typed(p *features.Plan, m *map[string]features.Value, sp *spans, i, j int) (map[string]features.Value, error) {
	if sp.n == 0 {
		return nil, nil
	}
	if len(req.slots) < len(p.Inputs) {
		req.slots = make([]slot, len(p.Inputs))
	}
	slots, touched := req.slots, req.touched[:0]
	r := reader{s: req.body, stack: req.stack[:0]}
	for n := range sp.n {
		s := sp.at(n)
		r.i = s.start
		r.object(func(key string) bool {
			start := r.i
			r.skip()
			if k := p.Input(key); k >= 0 {
				if !slots[k].set {
					slots[k].set = true
					touched = append(touched, k)
				}
				slots[k].span = span{start, r.i}
			}
			return true
		})
	}
	req.touched, req.stack = touched, r.stack
	if len(touched) == 0 {
		return nil, nil
	}
	out := *m
	if out == nil {
		out = make(map[string]features.Value, len(touched))
		*m = out
	} else {
		clear(out)
	}
	var err error
	for _, k := range touched {
		sl := &slots[k]
		sl.set = false
		raw := req.body[sl.start:sl.end]
		if err != nil || raw == "null" {
			continue
		}
		in := p.Inputs[k]
		v, verr := typeValue(in.Type, raw)
		if verr != nil {
			where := fmt.Sprintf("queries[%d].features", i)
			if j >= 0 {
				where = fmt.Sprintf("queries[%d].candidates[%d].features", i, j)
			}
			err = badRequest("%s.%s: %v", where, in.Name, verr)
			continue
		}
		out[in.Name] = v
	}
	return out, err
}

// typeValue converts a JSON value (not null) into a value of type t, as
// features.Coerce converts what encoding/json decodes with UseNumber.
func typeValue(t features.Type, raw string) (features.Value, error) {
	switch c := raw[0]; {
	case c == '-' || isDigit(c):
		switch t {
		case features.Float:
			if f, err := strconv.ParseFloat(raw, 64); err == nil {
				return features.FloatValue(f), nil
			}
		case features.Int:
			if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
				return features.IntValue(n), nil
			}
			if f, err := strconv.ParseFloat(raw, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
				return features.IntValue(int64(f)), nil
			}
		}
	case c == '"' && t == features.String:
		r := reader{s: raw}
		s, _ := r.str(true)
		return features.StringValue(s), nil
	case c == 't' && t == features.Bool:
		return features.BoolValue(true), nil
	case c == 'f' && t == features.Bool:
		return features.BoolValue(false), nil
	}
	// Vectors, lists, and every mismatch: Coerce itself, on what
	// encoding/json gives, so that results and messages are Coerce's.
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return features.Value{}, err
	}
	return features.Coerce(t, x)
}
