package features

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/golang/snappy"
)

// ErrCorrupt is wrapped by every error that reports bytes which are not a
// valid encoded value.
var ErrCorrupt = errors.New("corrupt value")

// Size limits of the encoding. Decoders check them before allocating.
const (
	MaxValueSize = 1 << 20 // bytes of a decoded payload
	MaxItems     = 1 << 16 // items of a vector or list
)

// Header bits of the first byte of an encoded value; the low four bits hold
// the Type.
const (
	flagStamp  = 0x40 // a uvarint of unix seconds follows the header
	flagSnappy = 0x80 // the payload is a snappy block
	maskType   = 0x0f
	maskZero   = 0x30 // reserved, must be zero

	// minCompress is the payload size from which Encode tries snappy.
	minCompress = 64
)

// Encode appends the encoding of v to dst and returns the extended slice.
// See docs/format.md for the layout. Encoding an invalid value appends nothing.
func Encode(dst []byte, v Value) []byte { return encode(dst, v, 0, false) }

// EncodeStamped is Encode with the time the value was written, in unix
// seconds, which lets readers enforce a feature's max age.
func EncodeStamped(dst []byte, v Value, unix int64) []byte { return encode(dst, v, unix, true) }

func encode(dst []byte, v Value, unix int64, stamped bool) []byte {
	if v.t == Invalid {
		return dst
	}
	start := len(dst)
	head := byte(v.t)
	if stamped {
		head |= flagStamp
	}
	dst = append(dst, head)
	if stamped {
		dst = binary.AppendUvarint(dst, uint64(max(unix, 0)))
	}
	body := len(dst)
	switch v.t {
	case Float:
		dst = binary.LittleEndian.AppendUint64(dst, v.bits)
	case Int:
		dst = binary.AppendVarint(dst, int64(v.bits))
	case Bool:
		dst = append(dst, byte(v.bits))
	case String:
		dst = append(dst, v.s...)
	case Vector:
		dst = binary.AppendUvarint(dst, uint64(len(v.vec)))
		for _, f := range v.vec {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
		}
	case List:
		dst = binary.AppendUvarint(dst, uint64(len(v.list)))
		for _, s := range v.list {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	if n := len(dst) - body; n >= minCompress && snappy.MaxEncodedLen(n) > 0 {
		// Compress into the spare capacity after the payload, then move
		// the block over the payload when it is shorter.
		end := len(dst)
		dst = slices.Grow(dst, snappy.MaxEncodedLen(n))
		packed := snappy.Encode(dst[end:cap(dst)], dst[body:end])
		if len(packed) < n {
			dst = dst[:body+copy(dst[body:end], packed)]
			dst[start] |= flagSnappy
		} else {
			dst = dst[:end]
		}
	}
	return dst
}

// payloadSize returns the bytes of v's uncompressed payload.
func payloadSize(v Value) int {
	switch v.t {
	case Float:
		return 8
	case Int:
		return varintLen(zigzag(int64(v.bits)))
	case Bool:
		return 1
	case String:
		return len(v.s)
	case Vector:
		return varintLen(uint64(len(v.vec))) + 4*len(v.vec)
	case List:
		n := varintLen(uint64(len(v.list)))
		for _, s := range v.list {
			n += varintLen(uint64(len(s))) + len(s)
		}
		return n
	}
	return 0
}

func zigzag(i int64) uint64 { return uint64(i<<1) ^ uint64(i>>63) }

func varintLen(u uint64) int {
	n := 1
	for ; u >= 0x80; u >>= 7 {
		n++
	}
	return n
}

// CheckSize returns an error wrapping ErrCorrupt when v is too large to be
// stored: more than MaxItems items or a payload over MaxValueSize bytes.
// Decode refuses such values, so writers check them first.
func CheckSize(v Value) error {
	if n := max(len(v.vec), len(v.list)); n > MaxItems {
		return fmt.Errorf("%w: %s of %d items is over the limit of %d", ErrCorrupt, v.t, n, MaxItems)
	}
	if n := payloadSize(v); n > MaxValueSize {
		return fmt.Errorf("%w: %s of %d bytes is over the limit of %d", ErrCorrupt, v.t, n, MaxValueSize)
	}
	return nil
}

// Decode decodes one encoded value. Errors wrap ErrCorrupt. Strings are
// copied out of b; b may be reused after Decode returns.
func Decode(b []byte) (Value, error) {
	v, _, err := DecodeStamped(b)
	return v, err
}

// DecodeStamped decodes one encoded value and returns the unix seconds it was
// stamped with, or 0 when it carries no stamp.
func DecodeStamped(b []byte) (Value, int64, error) { return decodeStamped(b, nil) }

// Decode decodes one stored value of the feature, as DecodeStamped does,
// except that a short string it has met before is not copied again: the
// values of a categorical feature are a handful of strings, and reading
// one need not allocate.
func (s *Spec) Decode(b []byte) (Value, int64, error) { return decodeStamped(b, s) }

// maxInterned and maxInternedLen bound the strings a spec keeps to share.
const (
	maxInterned    = 256
	maxInternedLen = 64
)

// intern returns p as a string, shared with the earlier values of s that
// held the same bytes while s keeps fewer than maxInterned of them.
func (s *Spec) intern(p []byte) string {
	if s == nil || len(p) > maxInternedLen {
		return string(p)
	}
	old := s.interned.Load()
	if old != nil {
		if v, ok := (*old)[string(p)]; ok {
			return v
		}
		if len(*old) >= maxInterned {
			return string(p)
		}
	}
	v := string(p)
	s.internMu.Lock()
	defer s.internMu.Unlock()
	var m map[string]string
	if cur := s.interned.Load(); cur != nil {
		if len(*cur) >= maxInterned {
			return v
		}
		m = make(map[string]string, len(*cur)+1)
		for k, x := range *cur {
			m[k] = x
		}
	} else {
		m = make(map[string]string, 1)
	}
	m[v] = v
	s.interned.Store(&m)
	return v
}

func decodeStamped(b []byte, spec *Spec) (Value, int64, error) {
	if len(b) == 0 {
		return Value{}, 0, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	head := b[0]
	t := Type(head & maskType)
	if head&maskZero != 0 || t == Invalid || t > List {
		return Value{}, 0, fmt.Errorf("%w: bad header byte 0x%02x", ErrCorrupt, head)
	}
	p := b[1:]
	var unix int64
	if head&flagStamp != 0 {
		u, n := binary.Uvarint(p)
		if n <= 0 || u > math.MaxInt64 {
			return Value{}, 0, fmt.Errorf("%w: bad time stamp", ErrCorrupt)
		}
		unix, p = int64(u), p[n:]
	}
	if head&flagSnappy != 0 {
		n, err := snappy.DecodedLen(p)
		if err != nil {
			return Value{}, 0, fmt.Errorf("%w: snappy: %v", ErrCorrupt, err)
		}
		if n > MaxValueSize {
			return Value{}, 0, fmt.Errorf("%w: payload of %d bytes is over the limit of %d", ErrCorrupt, n, MaxValueSize)
		}
		if p, err = snappy.Decode(nil, p); err != nil {
			return Value{}, 0, fmt.Errorf("%w: snappy: %v", ErrCorrupt, err)
		}
	} else if len(p) > MaxValueSize {
		return Value{}, 0, fmt.Errorf("%w: payload of %d bytes is over the limit of %d", ErrCorrupt, len(p), MaxValueSize)
	}
	v, err := decodePayload(t, p, spec)
	return v, unix, err
}

// DecodeScalar decodes an encoded float, int or bool without making a
// Value: it returns the type, the bits as Value and Got hold them, and the
// stamp (0 for none). For a value of another type it returns the type and
// its stamp but no bits: DecodeStamped decodes those. Errors wrap
// ErrCorrupt; a valid scalar costs no allocation.
func DecodeScalar(b []byte) (t Type, bits uint64, stamp int64, err error) {
	if len(b) == 0 {
		return Invalid, 0, 0, errEmpty
	}
	head := b[0]
	t = Type(head & maskType)
	if head&maskZero != 0 || t == Invalid || t > List {
		return Invalid, 0, 0, fmt.Errorf("%w: bad header byte 0x%02x", ErrCorrupt, head)
	}
	p := b[1:]
	if head&flagStamp != 0 {
		u, n := binary.Uvarint(p)
		if n <= 0 || u > math.MaxInt64 {
			return Invalid, 0, 0, errStamp
		}
		stamp, p = int64(u), p[n:]
	}
	if !t.Scalar() {
		return t, 0, stamp, nil
	}
	if head&flagSnappy != 0 {
		// Writers need not compress a scalar, but may.
		var buf [binary.MaxVarintLen64]byte
		if n, err := snappy.DecodedLen(p); err != nil || n > len(buf) {
			return Invalid, 0, 0, fmt.Errorf("%w: compressed %s of %d bytes", ErrCorrupt, t, n)
		}
		if p, err = snappy.Decode(buf[:], p); err != nil {
			return Invalid, 0, 0, fmt.Errorf("%w: snappy: %v", ErrCorrupt, err)
		}
	}
	switch t {
	case Float:
		if len(p) != 8 {
			return Invalid, 0, 0, fmt.Errorf("%w: float of %d bytes", ErrCorrupt, len(p))
		}
		return t, binary.LittleEndian.Uint64(p), stamp, nil
	case Int:
		i, n := binary.Varint(p)
		if n <= 0 || n != len(p) {
			return Invalid, 0, 0, errInt
		}
		return t, uint64(i), stamp, nil
	}
	if len(p) != 1 || p[0] > 1 {
		return Invalid, 0, 0, errBool
	}
	return t, uint64(p[0]), stamp, nil
}

var (
	errEmpty = fmt.Errorf("%w: empty", ErrCorrupt)
	errStamp = fmt.Errorf("%w: bad time stamp", ErrCorrupt)
	errInt   = fmt.Errorf("%w: bad int", ErrCorrupt)
	errBool  = fmt.Errorf("%w: bad bool", ErrCorrupt)
)

func decodePayload(t Type, p []byte, spec *Spec) (Value, error) {
	switch t {
	case Float:
		if len(p) != 8 {
			return Value{}, fmt.Errorf("%w: float of %d bytes", ErrCorrupt, len(p))
		}
		return Value{t: Float, bits: binary.LittleEndian.Uint64(p)}, nil
	case Int:
		i, n := binary.Varint(p)
		if n <= 0 || n != len(p) {
			return Value{}, fmt.Errorf("%w: bad int", ErrCorrupt)
		}
		return IntValue(i), nil
	case Bool:
		if len(p) != 1 || p[0] > 1 {
			return Value{}, fmt.Errorf("%w: bad bool", ErrCorrupt)
		}
		return BoolValue(p[0] == 1), nil
	case String:
		if !utf8.Valid(p) {
			return Value{}, fmt.Errorf("%w: string is not UTF-8", ErrCorrupt)
		}
		return StringValue(spec.intern(p)), nil
	case Vector:
		n, k := binary.Uvarint(p)
		if k <= 0 || n > MaxItems {
			return Value{}, fmt.Errorf("%w: bad vector length", ErrCorrupt)
		}
		p = p[k:]
		if uint64(len(p)) != 4*n {
			return Value{}, fmt.Errorf("%w: vector of %d items has %d bytes", ErrCorrupt, n, len(p))
		}
		vec := make([]float32, n)
		for i := range vec {
			vec[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
		}
		return VectorValue(vec), nil
	case List:
		n, k := binary.Uvarint(p)
		if k <= 0 || n > MaxItems || n > uint64(len(p)) {
			return Value{}, fmt.Errorf("%w: bad list length", ErrCorrupt)
		}
		p = p[k:]
		// The items share one string copied from the payload.
		all := string(p)
		list := make([]string, n)
		off := 0
		for i := range list {
			m, k := binary.Uvarint(p[off:])
			if k <= 0 || m > uint64(len(p)-off-k) {
				return Value{}, fmt.Errorf("%w: bad list item %d", ErrCorrupt, i)
			}
			item := all[off+k : off+k+int(m)]
			if !utf8.ValidString(item) {
				return Value{}, fmt.Errorf("%w: list item %d is not UTF-8", ErrCorrupt, i)
			}
			list[i] = item
			off += k + int(m)
		}
		if off != len(p) {
			return Value{}, fmt.Errorf("%w: %d bytes after the list", ErrCorrupt, len(p)-off)
		}
		return ListValue(list), nil
	}
	return Value{}, fmt.Errorf("%w: type %d", ErrCorrupt, t)
}
