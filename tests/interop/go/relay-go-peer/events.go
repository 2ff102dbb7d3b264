package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// event is one line of the control protocol's output. Keys keep the order in
// which they were given ("type" first) so that the lines stay readable in test
// logs; encoding/json would sort a map's keys.
type event struct {
	kv []any // key, value, key, value, ...; kv[0] == "type"
}

func newEvent(typ string, kv ...any) event {
	if len(kv)%2 != 0 {
		panic("newEvent: odd number of key/value arguments")
	}
	return event{kv: append([]any{"type", typ}, kv...)}
}

// Type returns the event's "type" value.
func (e event) Type() string { return e.kv[1].(string) }

// Get returns the value stored under key, or nil.
func (e event) Get(key string) any {
	for i := 0; i+1 < len(e.kv); i += 2 {
		if e.kv[i] == key {
			return e.kv[i+1]
		}
	}
	return nil
}

// Str returns the value under key when it is a string, or "".
func (e event) Str(key string) string {
	s, _ := e.Get(key).(string)
	return s
}

func (e event) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i+1 < len(e.kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.kv[i])
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.kv[i+1])
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (e event) String() string {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Sprintf(`{"type":"error","error":%q}`, "marshal event: "+err.Error())
	}
	return string(b)
}

// idString renders a u64 message id as a decimal string: ids use the full
// 64-bit range and would lose precision as JSON numbers in many parsers.
func idString(id uint64) string { return strconv.FormatUint(id, 10) }
