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
	// An Event holds strings, numbers, booleans and times: nothing that
	// can fail to marshal except a time outside years 0-9999.
	if err := e.enc.Encode(ev); err != nil {
		fallback := *ev
		fallback.Time, fallback.FirstSeen, fallback.LastSeen = clampYear(ev.Time), clampYear(ev.FirstSeen), clampYear(ev.LastSeen)
		e.buf.Reset()
		_ = e.enc.Encode(&fallback)
	}
	return append(dst, bytes.TrimSuffix(e.buf.Bytes(), []byte("\n"))...)
}
