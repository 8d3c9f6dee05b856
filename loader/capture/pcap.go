package capture

import (
	"encoding/binary"
	"io"
	"time"
)

// pcap file layout (tcpdump.org/manpages/pcap-savefile.5.html).
const (
	pcapFileHeaderLen    = 24
	pcapRecordHeaderLen  = 16
	pcapModifiedExtraLen = 8 // ifindex, protocol, pkt_type, padding
	pcapSnaplenOffset    = 16
	pcapLinkTypeOffset   = 20
	// maxSnaplen is libpcap's MAXIMUM_SNAPLEN: no capture tool writes a
	// longer record, so a longer one is damage, not a jumbo frame.
	maxSnaplen = 262144
	// pcapLinkTypeMask keeps the link type of the header's link type field;
	// the upper bits carry the FCS length, which the twin does not need
	// (the IP and UDP lengths bound what it reads).
	pcapLinkTypeMask = 0xffff
)

// pcapSource reads the classic pcap format.
//
// gopacket's pcapgo.Reader reads this format correctly, but it costs too
// much for the analyze path's budget (10 M packets/s, 100 ns a packet for
// everything): on BenchmarkPcapgoReader (1,000,000 packets of a provisioning
// mix in page cache, 2-core EPYC) its ZeroCopyReadPacketData takes 130-170
// ns a packet, against 50-60 ns for this reader on BenchmarkReadPcap, about
// half of which is read(2) copying the file. pcapgo reads every record with
// two io.ReadFull calls into its own buffer and an interface call per
// field; this reader hands out slices of its read buffer and decodes the
// header inline. pcapgo also gives no byte offsets for errors and takes
// records up to 256 KiB longer than the snapshot length, which this project
// calls damage. TestSharedCaptures checks this reader against pcapgo on
// every shared capture.
type pcapSource struct {
	source
	endian
	nanos     bool // nanosecond timestamps; microseconds otherwise
	recordLen int  // record header length: 16, or 24 for the modified format
	snaplen   uint32
	kind      linkKind
}

func newPcapSource(base source) (Source, error) {
	src := &pcapSource{source: base}
	hdr, err := src.s.peek(pcapFileHeaderLen)
	if err != nil {
		return nil, src.readError(err, 0, 0, "pcap file header", len(hdr), pcapFileHeaderLen)
	}
	src.recordLen = pcapRecordHeaderLen
	switch binary.BigEndian.Uint32(hdr) {
	case magicPcapMicro:
		src.bigEndian = true
	case magicPcapNano:
		src.bigEndian, src.nanos = true, true
	case magicPcapModified:
		src.bigEndian, src.recordLen = true, pcapRecordHeaderLen+pcapModifiedExtraLen
	case magicPcapNanoSwapped:
		src.nanos = true
	case magicPcapModSwapped:
		src.recordLen = pcapRecordHeaderLen + pcapModifiedExtraLen
	}
	if major := src.u16(hdr[4:]); major != 2 {
		return nil, src.inputError(0, 4, "pcap version %d.%d is not supported (tcpdump writes 2.4)", major, src.u16(hdr[6:]))
	}
	src.snaplen = src.u32(hdr[pcapSnaplenOffset:])
	if src.snaplen == 0 || src.snaplen > maxSnaplen {
		// Some writers put 0 or 0xffffffff for "no limit".
		src.snaplen = maxSnaplen
	}
	linkType := src.u32(hdr[pcapLinkTypeOffset:]) & pcapLinkTypeMask
	if src.kind = linkKindOf(linkType); src.kind == linkUnsupported {
		return nil, src.inputError(0, pcapLinkTypeOffset, "%s", unsupportedLinkType(linkType))
	}
	src.s.skip(pcapFileHeaderLen)
	return src, nil
}

func (src *pcapSource) Next() (*Packet, error) {
	if src.err != nil {
		return nil, src.err
	}
	number := src.count + 1
	offset := src.s.offset()
	hdr, err := src.s.peek(src.recordLen)
	if err != nil {
		if len(hdr) == 0 && err == io.EOF {
			return nil, src.fail(err)
		}
		return nil, src.readError(err, number, offset, "packet record header", len(hdr), src.recordLen)
	}
	sec := src.u32(hdr)
	frac := src.u32(hdr[4:])
	caplen := src.u32(hdr[8:])
	wirelen := src.u32(hdr[12:])
	if caplen > src.snaplen {
		return nil, src.inputError(number, offset, "captured length %d exceeds the snapshot length %d in the file header", caplen, src.snaplen)
	}
	if caplen > wirelen {
		return nil, src.inputError(number, offset, "captured length %d exceeds the length on the wire %d", caplen, wirelen)
	}
	total := src.recordLen + int(caplen)
	rec, err := src.s.peek(total)
	if err != nil {
		return nil, src.readError(err, number, offset, "packet data", len(rec)-src.recordLen, int(caplen))
	}
	src.s.skip(total)
	src.count = number
	p := &src.pkt
	nsec := int64(frac)
	if !src.nanos {
		nsec *= 1000
	}
	p.Timestamp = time.Unix(int64(sec), nsec).UTC()
	p.WireLen = int(wirelen)
	p.Number = number
	decodeLink(p, src.kind, rec[src.recordLen:total])
	return p, nil
}
