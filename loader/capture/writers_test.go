package capture

import (
	"compress/gzip"
	"encoding/binary"
	"io"
)

// Minimal writers for what pcapgo cannot write: big-endian files, pcapng
// timestamp resolutions other than nanoseconds, simple packet blocks, and
// damaged files. They write exactly the fields given, right or wrong.

type pcapRecord struct {
	sec, frac       uint32
	caplen, wirelen uint32
	data            []byte
}

func rec(sec, frac uint32, data []byte) pcapRecord {
	return pcapRecord{sec, frac, uint32(len(data)), uint32(len(data)), data}
}

// pcapFile writes a pcap file.
func pcapFile(order binary.AppendByteOrder, nanos bool, snaplen, linkType uint32, records ...pcapRecord) []byte {
	magic := uint32(magicPcapMicro)
	if nanos {
		magic = magicPcapNano
	}
	b := order.AppendUint32(nil, magic)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = order.AppendUint32(b, 0) // thiszone
	b = order.AppendUint32(b, 0) // sigfigs
	b = order.AppendUint32(b, snaplen)
	b = order.AppendUint32(b, linkType)
	for _, r := range records {
		b = order.AppendUint32(b, r.sec)
		b = order.AppendUint32(b, r.frac)
		b = order.AppendUint32(b, r.caplen)
		b = order.AppendUint32(b, r.wirelen)
		b = append(b, r.data...)
	}
	return b
}

// ngWriter builds a pcapng file block by block.
type ngWriter struct {
	order binary.AppendByteOrder
	b     []byte
}

func pad4(n int) int { return (n + 3) &^ 3 }

// block appends a block with a correct length in both places.
func (w *ngWriter) block(typ uint32, body []byte) *ngWriter {
	n := uint32(12 + pad4(len(body)))
	w.b = w.order.AppendUint32(w.b, typ)
	w.b = w.order.AppendUint32(w.b, n)
	w.b = append(w.b, body...)
	w.b = append(w.b, make([]byte, pad4(len(body))-len(body))...)
	w.b = w.order.AppendUint32(w.b, n)
	return w
}

// section appends a section header, switching to order.
func (w *ngWriter) section(order binary.AppendByteOrder) *ngWriter {
	w.order = order
	body := order.AppendUint32(nil, ngByteOrder)
	body = order.AppendUint16(body, 1)
	body = order.AppendUint16(body, 0)
	body = order.AppendUint64(body, ^uint64(0)) // section length unknown
	return w.block(ngBlockSHB, body)
}

// option is a pcapng option.
type option struct {
	code  uint16
	value []byte
}

// tsresol is the if_tsresol option.
func tsresol(v byte) option { return option{ngOptTSResol, []byte{v}} }

func (w *ngWriter) options(body []byte, opts []option) []byte {
	for _, o := range opts {
		body = w.order.AppendUint16(body, o.code)
		body = w.order.AppendUint16(body, uint16(len(o.value)))
		body = append(body, o.value...)
		body = append(body, make([]byte, pad4(len(o.value))-len(o.value))...)
	}
	if len(opts) > 0 {
		body = append(body, 0, 0, 0, 0)
	}
	return body
}

func (w *ngWriter) iface(linkType uint16, snaplen uint32, opts ...option) *ngWriter {
	body := w.order.AppendUint16(nil, linkType)
	body = w.order.AppendUint16(body, 0)
	body = w.order.AppendUint32(body, snaplen)
	return w.block(ngBlockIDB, w.options(body, opts))
}

// epb appends an enhanced packet block; ts counts the interface's units.
func (w *ngWriter) epb(iface uint32, ts uint64, caplen, wirelen uint32, data []byte) *ngWriter {
	body := w.order.AppendUint32(nil, iface)
	body = w.order.AppendUint32(body, uint32(ts>>32))
	body = w.order.AppendUint32(body, uint32(ts))
	body = w.order.AppendUint32(body, caplen)
	body = w.order.AppendUint32(body, wirelen)
	body = append(body, data...)
	return w.block(ngBlockEPB, body)
}

func (w *ngWriter) spb(wirelen uint32, data []byte) *ngWriter {
	body := w.order.AppendUint32(nil, wirelen)
	return w.block(ngBlockSPB, append(body, data...))
}

func newNg(order binary.AppendByteOrder) *ngWriter { return (&ngWriter{}).section(order) }

func gzipWriter(w io.Writer) *gzip.Writer { return gzip.NewWriter(w) }
