package capture

import (
	"bytes"
	"io"
)

// stream is a read buffer that hands out slices of itself, so that packets
// are not copied a second time, and that knows the input offset of every
// byte, for error messages. It reads from the input only when a record is
// not complete yet, and takes what one Read returns, so a pipe's packets are
// delivered as soon as they arrive.
//
// bufio.Reader does the buffering but hides the offset and copies on Read;
// its Peek would serve, but records larger than its fixed size would not.
type stream struct {
	r        io.Reader
	buf      []byte
	pos, end int   // the unread bytes are buf[pos:end]
	base     int64 // input offset of buf[0]
	err      error // the input's error (io.EOF at its end), returned once the buffer is drained
}

func newStream(r io.Reader, size int) *stream {
	return &stream{r: r, buf: make([]byte, size)}
}

// maxEmptyReads bounds the reads that return neither bytes nor an error.
const maxEmptyReads = 100

// peek returns the next n bytes without consuming them. The slice is valid
// until the next peek. When the input ends first, it returns the bytes there
// are and the input's error (io.EOF at a clean end).
func (s *stream) peek(n int) ([]byte, error) {
	if s.end-s.pos >= n {
		return s.buf[s.pos : s.pos+n], nil
	}
	return s.fill(n)
}

func (s *stream) fill(n int) ([]byte, error) {
	empty := 0
	for s.end-s.pos < n {
		if s.err != nil {
			return s.buf[s.pos:s.end], s.err
		}
		if len(s.buf)-s.pos < n || s.end == len(s.buf) {
			s.makeRoom(n)
		}
		m, err := s.r.Read(s.buf[s.end:])
		s.end += m
		if err != nil {
			s.err = err
		} else if m == 0 {
			if empty++; empty >= maxEmptyReads {
				s.err = io.ErrNoProgress
			}
		}
	}
	return s.buf[s.pos : s.pos+n], nil
}

// makeRoom moves the unread bytes to the front of the buffer and grows it
// when n bytes would not fit. It grows at most twofold at a time, and only
// when the buffer is full of bytes really read, so a bogus record length in
// a small file cannot make it allocate gigabytes.
func (s *stream) makeRoom(n int) {
	if s.pos > 0 {
		copy(s.buf, s.buf[s.pos:s.end])
		s.base += int64(s.pos)
		s.end -= s.pos
		s.pos = 0
	}
	if s.end == len(s.buf) && len(s.buf) < n {
		grown := make([]byte, min(2*len(s.buf), n+len(s.buf)))
		copy(grown, s.buf[:s.end])
		s.buf = grown
	}
}

// skip consumes n bytes, which a peek has returned.
func (s *stream) skip(n int) { s.pos += n }

// offset is the input offset of the next unread byte.
func (s *stream) offset() int64 { return s.base + int64(s.pos) }

// remaining reads the unread buffered bytes and then the rest of the input.
func (s *stream) remaining() io.Reader {
	return io.MultiReader(bytes.NewReader(s.buf[s.pos:s.end]), s.r)
}

// release drops the buffer.
func (s *stream) release() {
	s.buf, s.pos, s.end = nil, 0, 0
	if s.err == nil {
		s.err = io.EOF
	}
}
