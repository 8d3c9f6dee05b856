package catalog

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"strings"
)

// siteTableKeys are the keys of xCAT's site table that move catalog ports.
var siteTableKeys = map[string]bool{"xcatdport": true, "xcatiport": true, "xcatlport": true, "httpport": true}

// ParseSiteTable reads the output of `tabdump site` (CSV with a "#key,value,
// comments,disable" header) and returns the port overrides among its keys.
// Other keys are ignored, as are disabled lines; a port key with a value that
// is not a port is an error.
func ParseSiteTable(data []byte, name string) ([]PortOverride, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	var out []PortOverride
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := r.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
				err = pe.Err
			}
			return nil, &Error{File: name, Line: line, Msg: "not tabdump output: " + err.Error()}
		}
		if len(rec) < 2 {
			return nil, &Error{File: name, Line: line, Msg: "want key,value[,comments,disable]"}
		}
		key := strings.TrimSpace(rec[0])
		if !siteTableKeys[key] {
			continue
		}
		if len(rec) >= 4 && isDisabled(rec[3]) {
			continue
		}
		port, err := parseSinglePort(strings.TrimSpace(rec[1]))
		if err != nil {
			return nil, &Error{File: name, Line: line, Field: key, Msg: err.Error()}
		}
		out = append(out, PortOverride{Key: key, Port: port, File: name, Line: line})
	}
	return out, nil
}

func isDisabled(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "yes", "y", "true":
		return true
	}
	return false
}
