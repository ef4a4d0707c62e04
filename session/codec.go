package session

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec encodes attribute values for storage. Each attribute is encoded on its own, so a save
// writes only the attributes that changed. A Codec must be safe for concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default Codec: encoding/json, readable with redis-cli.
var JSON Codec = jsonCodec{}

// Msgpack is a Codec with github.com/vmihailenco/msgpack/v5: smaller and faster than JSON.
var Msgpack Codec = msgpackCodec{}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

type msgpackCodec struct{}

func (msgpackCodec) Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal first walks the value without building it: msgpack v5 sizes a slice decoded into an
// interface by the length its header claims, so five corrupt bytes claiming 2^32 elements would
// allocate tens of gigabytes. Walking checks every claimed element is really there (each takes at
// least a byte), which bounds what decoding then allocates by the value's size.
func (msgpackCodec) Unmarshal(data []byte, v any) error {
	if err := msgpack.NewDecoder(bytes.NewReader(data)).Skip(); err != nil {
		return fmt.Errorf("msgpack: %w", err)
	}
	return msgpack.Unmarshal(data, v)
}
