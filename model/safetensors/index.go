package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxIndexSize caps an index file; real ones are a few MB at most.
const maxIndexSize = MaxHeaderSize

// ParseIndex parses and validates a model.safetensors.index.json: a
// "weight_map" object (required, no duplicate names, shard names must be
// plain file names) and an optional "metadata" object.
func ParseIndex(b []byte) (*Index, error) {
	if len(b) > maxIndexSize {
		return nil, fmt.Errorf("index of %d bytes exceeds the %d byte limit", len(b), maxIndexSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := expectDelim(dec, '{'); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	ix := &Index{Metadata: map[string]string{}}
	seenTop := map[string]bool{}
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		if seenTop[key] {
			return nil, fmt.Errorf("index: duplicate key %q", key)
		}
		seenTop[key] = true
		switch key {
		case "metadata":
			var md map[string]json.RawMessage
			if err := dec.Decode(&md); err != nil {
				return nil, fmt.Errorf("index: metadata: %w", err)
			}
			for k, v := range md {
				var s string
				if json.Unmarshal(v, &s) == nil {
					ix.Metadata[k] = s
				} else {
					ix.Metadata[k] = string(v)
				}
			}
		case "weight_map":
			wm, err := parseWeightMap(dec)
			if err != nil {
				return nil, fmt.Errorf("index: weight_map: %w", err)
			}
			ix.WeightMap = wm
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, fmt.Errorf("index: %s: %w", key, err)
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("index: trailing data after the JSON object")
	}
	if ix.WeightMap == nil {
		return nil, fmt.Errorf("index: missing weight_map")
	}
	return ix, nil
}

func parseWeightMap(dec *json.Decoder) (map[string]string, error) {
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	wm := map[string]string{}
	for dec.More() {
		name, err := stringToken(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := wm[name]; dup {
			return nil, fmt.Errorf("duplicate tensor %q", name)
		}
		file, err := stringToken(dec)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if !validShard(file) {
			return nil, fmt.Errorf("tensor %q: shard %q is not a plain file name", name, file)
		}
		wm[name] = file
	}
	return wm, expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return fmt.Errorf("want %q, got %v", d, tok)
	}
	return nil
}

func stringToken(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %v", tok)
	}
	return s, nil
}
