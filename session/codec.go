package session

import (
	"encoding/json"

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

func (msgpackCodec) Marshal(v any) ([]byte, error)      { return msgpack.Marshal(v) }
func (msgpackCodec) Unmarshal(data []byte, v any) error { return msgpack.Unmarshal(data, v) }
