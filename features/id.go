package features

import (
	"fmt"
	"unicode/utf8"
)

// MaxIDSize caps the bytes of an entity id.
const MaxIDSize = 1024

// CheckID checks an entity id: 1 to MaxIDSize bytes of UTF-8 without
// control bytes (0x00 to 0x1F, 0x7F) and without '{', '}' or ':'. The
// three are refused so that an id stays inside the place its key template
// gives it: braces would make a Redis Cluster hash tag of part of the key
// (moving it to another cluster slot or ring shard than its template
// intends), and ':' separates the parts of a composite key, where an id
// holding one could read as two (docs/format.md). Every way an id enters
// seer (request decoding, the Go API and gRPC, upload files) checks it
// here. Errors wrap ErrID.
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrID)
	case len(id) > MaxIDSize:
		return fmt.Errorf("%w: %d bytes is over the limit of %d", ErrID, len(id), MaxIDSize)
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("%w: control byte 0x%02x at byte %d", ErrID, c, i)
		case c == '{' || c == '}':
			return fmt.Errorf("%w: %q at byte %d (braces would make a Redis hash tag of part of the key)", ErrID, c, i)
		case c == ':':
			return fmt.Errorf("%w: ':' at byte %d (it separates the parts of composite keys)", ErrID, i)
		}
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: not valid UTF-8", ErrID)
	}
	return nil
}
