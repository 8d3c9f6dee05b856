// Package export delivers verdict events (classify.Event) to people and to
// SIEMs, and prints the run summary (classify.Summary) as a table.
//
// # Output specs
//
// Each --output flag names one sink; the flag repeats. The grammar:
//
//	jsonl | jsonl:- | jsonl:PATH           JSON lines to stdout, or appended to PATH
//	cef   | cef:-   | cef:PATH             ArcSight CEF lines, likewise
//	leef  | leef:-  | leef:PATH            QRadar LEEF 2.0 lines, likewise
//	syslog[+udp|+tcp|+tls]://HOST[:PORT]   RFC 5424, the event as STRUCTURED-DATA
//	cef+syslog[+udp|+tcp|+tls]://...       RFC 5424 whose MSG is the CEF line
//	leef+syslog[+udp|+tcp|+tls]://...      RFC 5424 whose MSG is the LEEF line
//
// The scheme reads FORMAT+syslog+TRANSPORT: the format defaults to RFC 5424
// structured data and the transport to UDP (RFC 5426, default port 514).
// +tcp uses octet-counting framing (RFC 6587 section 3.4.1, default port
// 514); +tls is RFC 5425 (default port 6514). A syslog URL takes options
// after "?", joined by "&":
//
//	queue=N                   events held while the server is unreachable (default 4096)
//	facility=NAME|0-23        syslog facility (default local0)
//	sdid=NAME@NUMBER          SD-ID of the event element (default portwatch@32473;
//	                          32473 is the enterprise number RFC 5612 reserves for
//	                          documentation: a site with its own number uses it)
//	ca=PATH                   +tls: PEM CAs to verify the server (default: system roots)
//	cert=PATH&key=PATH        +tls: client certificate for mutual TLS
//	servername=NAME           +tls: name to verify in the server's certificate
//	insecure-skip-verify=true +tls: accept any certificate; only when asked for
//
// For example:
//
//	--output jsonl:/var/log/portwatch/events.jsonl
//	--output 'syslog+tls://siem.example.net?ca=/etc/pki/siem-ca.pem'
//	--output cef+syslog+tcp://arcsight.example.net:514
//
// # Delivery
//
// Emit never blocks: it puts the event in the sink's bounded queue, and one
// writer goroutine per sink encodes and writes it. When the destination
// fails (server down, connection refused or reset, TLS handshake failure,
// write error) the writer keeps the message, waits with exponential backoff
// (Options.MinBackoff to MaxBackoff, with jitter), reconnects and writes it
// again; meanwhile events queue, and when the queue is full new events are
// dropped and counted. A stream connection is watched for the server closing
// it, so few messages are written into a dead connection; syslog over TCP
// has no receipts, so one written just before a reset can still be lost.
// Close delivers what it can until its context is done and counts the rest
// as dropped. Stats returns each sink's counters for the metrics collector.
//
// # Formats
//
// docs/events.md is the schema: every JSON field, the verdicts and reasons,
// the severities, and how each field maps to RFC 5424 SD-PARAMs, CEF and
// LEEF keys, with an example of each produced by this package (a test keeps
// them equal to the golden files in testdata/).
package export
