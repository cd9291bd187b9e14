package features

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go/format"
)

// parquet-go trusts the sizes a file declares: a list count or a page size
// that a few flipped bits make huge is allocated before anything checks it
// (FuzzParquetReader found pages of 2 GB and footers of many GB). The
// checks here read what the library is about to trust and refuse it
// unless it fits in the bytes that hold it and in the limits below, so
// that a corrupt file costs a bounded amount of memory.

// More limits of Parquet files.
const (
	// MaxParquetPage bounds the uncompressed size of one page.
	MaxParquetPage = 64 << 20
	// MaxParquetPageValues bounds the values (nulls included) of one page.
	MaxParquetPageValues = 1 << 22
	// MaxParquetRowGroupMemory bounds what reading one row group may hold
	// at once: for each column, its largest page and that page's values
	// decoded.
	MaxParquetRowGroupMemory = 512 << 20
	// maxFooterMemory bounds what decoding the footer allocates,
	// estimated from its list elements.
	maxFooterMemory = 256 << 20
	// maxPageHeader bounds one page header (statistics included).
	maxPageHeader = 256 << 10
)

// Compact protocol types (thrift's TCompactProtocol).
const (
	tcStop   = 0
	tcTrue   = 1
	tcFalse  = 2
	tcByte   = 3
	tcI16    = 4
	tcI32    = 5
	tcI64    = 6
	tcDouble = 7
	tcBinary = 8
	tcList   = 9
	tcSet    = 10
	tcMap    = 11
	tcStruct = 12
)

// thriftWalk walks one struct of thrift's compact protocol, checking that
// every length and count fits in the bytes left and that nesting is
// shallow, so that a decoder that allocates what they say allocates at
// most a bounded multiple of the input's size.
type thriftWalk struct {
	b     []byte
	pos   int
	depth int
	// cost estimates what a decoder allocates for the list elements
	// seen: structs weigh structCost, anything else 16 bytes.
	cost       int64
	structCost int64
	// ints, when not nil, receives the integer fields of the outermost
	// struct and of the structs nested directly in it, by field path
	// (outer*100 + inner for nested ones).
	ints map[int]int64
}

var errThrift = errors.New("corrupt thrift structure")

func (w *thriftWalk) byte() (byte, error) {
	if w.pos >= len(w.b) {
		return 0, errThrift
	}
	c := w.b[w.pos]
	w.pos++
	return c, nil
}

func (w *thriftWalk) uvarint() (uint64, error) {
	v, n := binary.Uvarint(w.b[w.pos:])
	if n <= 0 {
		return 0, errThrift
	}
	w.pos += n
	return v, nil
}

// value checks and skips one value of type t; path is the field path for
// ints (-1: not recorded).
func (w *thriftWalk) value(t byte, path int) error {
	switch t {
	case tcTrue, tcFalse:
		// In a struct field, the type is the value.
		if path >= 0 && w.ints != nil {
			w.ints[path] = int64(2 - t)
		}
		return nil
	case tcByte:
		_, err := w.byte()
		return err
	case tcI16, tcI32, tcI64:
		u, err := w.uvarint()
		if err == nil && path >= 0 && w.ints != nil {
			w.ints[path] = int64(u>>1) ^ -int64(u&1)
		}
		return err
	case tcDouble:
		if len(w.b)-w.pos < 8 {
			return errThrift
		}
		w.pos += 8
		return nil
	case tcBinary:
		n, err := w.uvarint()
		if err != nil || n > uint64(len(w.b)-w.pos) {
			return errThrift
		}
		w.pos += int(n)
		return nil
	case tcList, tcSet:
		h, err := w.byte()
		if err != nil {
			return err
		}
		n, et := uint64(h>>4), h&0x0f
		if n == 15 {
			if n, err = w.uvarint(); err != nil {
				return err
			}
		}
		return w.elements(n, et)
	case tcMap:
		n, err := w.uvarint()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		kv, err := w.byte()
		if err != nil {
			return err
		}
		for range n {
			if err := w.element(kv >> 4); err != nil {
				return err
			}
			if err := w.element(kv & 0x0f); err != nil {
				return err
			}
		}
		return nil
	case tcStruct:
		return w.structure(path)
	}
	return errThrift
}

// elements checks n list elements of type t: each takes at least a byte.
func (w *thriftWalk) elements(n uint64, t byte) error {
	if n > uint64(len(w.b)-w.pos) {
		return errThrift
	}
	per := int64(16)
	if t == tcStruct {
		per = w.structCost
	}
	w.cost += int64(n) * per
	for range n {
		if err := w.element(t); err != nil {
			return err
		}
	}
	return nil
}

// element checks one element of a list, set or map: booleans there take
// a byte.
func (w *thriftWalk) element(t byte) error {
	if t == tcTrue || t == tcFalse {
		_, err := w.byte()
		return err
	}
	return w.value(t, -1)
}

// structure checks fields until the stop field. path >= 0 records ints.
func (w *thriftWalk) structure(path int) error {
	if w.depth++; w.depth > 32 {
		return errThrift
	}
	defer func() { w.depth-- }()
	id := 0
	for {
		h, err := w.byte()
		if err != nil {
			return err
		}
		t := h & 0x0f
		if t == tcStop {
			return nil
		}
		if d := int(h >> 4); d != 0 {
			id += d
		} else {
			u, err := w.uvarint()
			if err != nil {
				return err
			}
			id = int(int64(u>>1) ^ -int64(u&1))
		}
		sub := -1
		switch {
		case path == 0:
			sub = id
		case path > 0 && path < 100:
			sub = path*100 + id
		}
		if err := w.value(t, sub); err != nil {
			return err
		}
	}
}

// checkFooterBytes walks the footer and bounds what decoding it costs.
func checkFooterBytes(footer []byte) error {
	w := thriftWalk{b: footer, structCost: 600} // a ColumnChunk is the largest, 560 bytes
	if err := w.structure(-1); err != nil || w.pos != len(footer) {
		return errors.New("corrupt parquet file: bad footer")
	}
	if w.cost > maxFooterMemory {
		return fmt.Errorf("parquet footer describes too many row groups and columns (about %d MB of metadata, limit %d MB)", w.cost>>20, maxFooterMemory>>20)
	}
	return nil
}

// readFooter reads the footer's bytes; checkParquetFooter has checked
// their size.
func readFooter(r io.ReaderAt, size int64) ([]byte, error) {
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	b := make([]byte, n)
	if _, err := r.ReadAt(b, size-8-n); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return b, nil
}

// Page header fields (format.PageHeader and its nested headers).
const (
	phType           = 1
	phUncompressed   = 2
	phCompressed     = 3
	phDataValues     = 501 // data_page_header.num_values
	phDictValues     = 701 // dictionary_page_header.num_values
	phV2Values       = 801 // data_page_header_v2.num_values
	phV2DefLength    = 805
	phV2RepLength    = 806
	phV2IsCompressed = 807
)

// checkRowGroup reads the page headers of every column chunk of row group
// g before the library does, and checks them against the chunk's bytes
// and the limits. dataEnd is where the footer starts.
func checkRowGroup(r io.ReaderAt, md *format.FileMetaData, g int, dataEnd int64) error {
	rg := &md.RowGroups[g]
	var memory int64
	buf := make([]byte, 0, 4096)
	for ci := range rg.Columns {
		cc := &rg.Columns[ci]
		if cc.FilePath != "" || len(cc.EncryptedColumnMetadata) > 0 || cc.CryptoMetadata.Value != nil {
			return fmt.Errorf("column %d: chunks in other files or encrypted are not supported", ci)
		}
		m := &cc.MetaData
		switch m.Codec {
		case format.Uncompressed, format.Snappy:
		default:
			return fmt.Errorf("column %d: compression %s is not supported (write snappy, Spark's default, or uncompressed files)", ci, m.Codec)
		}
		start := m.DataPageOffset
		if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
			start = m.DictionaryPageOffset
		}
		end := start + m.TotalCompressedSize
		if start < 4 || m.TotalCompressedSize < 0 || end > dataEnd || end < start {
			return fmt.Errorf("column %d: corrupt parquet file: chunk bytes %d to %d outside the file's data", ci, start, end)
		}
		var largest int64
		for pos := start; pos < end; {
			n := min(int64(cap(buf)), end-pos)
			var h map[int]int64
			var hlen int
			for {
				buf = buf[:n]
				if _, err := r.ReadAt(buf, pos); err != nil {
					return fmt.Errorf("column %d: read: %w", ci, err)
				}
				w := thriftWalk{b: buf, structCost: 64, ints: map[int]int64{}}
				err := w.structure(0)
				if err == nil {
					h, hlen = w.ints, w.pos
					break
				}
				if n == end-pos || n >= maxPageHeader {
					return fmt.Errorf("column %d: corrupt parquet file: bad page header at byte %d", ci, pos)
				}
				n = min(2*n, end-pos, maxPageHeader)
				buf = make([]byte, 0, n)
			}
			compressed, uncompressed := h[phCompressed], h[phUncompressed]
			values := max(h[phDataValues], h[phDictValues], h[phV2Values])
			body := pos + int64(hlen)
			switch {
			case compressed < 0 || compressed > end-body:
				return fmt.Errorf("column %d: corrupt parquet file: a page of %d bytes at byte %d overruns its chunk", ci, compressed, pos)
			case uncompressed < 0 || uncompressed > MaxParquetPage:
				return fmt.Errorf("column %d: a page of %d bytes is over the limit of %d", ci, uncompressed, MaxParquetPage)
			case values < 0 || values > MaxParquetPageValues:
				return fmt.Errorf("column %d: a page of %d values is over the limit of %d", ci, values, MaxParquetPageValues)
			}
			if m.Codec == format.Snappy && compressed > 0 {
				// A snappy block starts with its decoded length, which
				// the decoder allocates; it must be the page's.
				skip := int64(0)
				if h[phType] == int64(format.DataPageV2) {
					skip = h[phV2DefLength] + h[phV2RepLength]
					if v, ok := h[phV2IsCompressed]; ok && v == 0 {
						skip = -1 // not compressed
					}
				}
				if skip >= 0 {
					if skip > compressed {
						return fmt.Errorf("column %d: corrupt parquet file: page levels overrun the page at byte %d", ci, pos)
					}
					if err := checkSnappyLength(r, body+skip, min(10, compressed-skip), uncompressed); err != nil {
						return fmt.Errorf("column %d: corrupt parquet file: page at byte %d: %w", ci, pos, err)
					}
				}
			}
			largest = max(largest, uncompressed+compressed+16*values)
			pos = body + compressed
		}
		if memory += largest; memory > MaxParquetRowGroupMemory {
			return fmt.Errorf("row group needs more than %d MB to read a page of each column", MaxParquetRowGroupMemory>>20)
		}
	}
	return nil
}

// checkSnappyLength checks that the snappy block at off declares at most
// limit bytes.
func checkSnappyLength(r io.ReaderAt, off, n, limit int64) error {
	if n <= 0 {
		return nil
	}
	var b [10]byte
	if _, err := r.ReadAt(b[:n], off); err != nil {
		return err
	}
	v, k := binary.Uvarint(b[:n])
	if k <= 0 || v > uint64(limit) {
		return errors.New("snappy block larger than its page")
	}
	return nil
}
