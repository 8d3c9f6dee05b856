package export

import (
	"bytes"
	"encoding/json"

	"portwatch/classify"
)

// jsonEncoder writes the event as one JSON object, the schema of the
// classify.Event tags. encoding/json escapes quotes, backslashes and
// control characters and replaces invalid UTF-8 by U+FFFD.
type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

func newJSONEncoder() *jsonEncoder {
	e := &jsonEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	// "<", ">" and "&" stay themselves: the line goes to log tools, not
	// into an HTML page, and \u003c only makes it harder to read.
	e.enc.SetEscapeHTML(false)
	return e
}

func (e *jsonEncoder) encode(dst []byte, ev *classify.Event) []byte {
	e.buf.Reset()
	// Times in UTC, as every other format writes them (a live observer's
	// are in the local zone), and absurd ones left out as they are there.
	// Then nothing in an Event can fail to marshal.
	utc := *ev
	utc.Time, utc.FirstSeen, utc.LastSeen = clampYear(ev.Time), clampYear(ev.FirstSeen), clampYear(ev.LastSeen)
	_ = e.enc.Encode(&utc)
	return append(dst, bytes.TrimSuffix(e.buf.Bytes(), []byte("\n"))...)
}
