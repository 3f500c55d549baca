package gguf

import (
	"fmt"
	"math"
)

// ValueType is the type of a metadata value (enum gguf_type in gguf.h).
type ValueType uint32

// Metadata value types.
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String names the value type.
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// fixedSize is the encoded size of a scalar of type t (0 for strings and
// arrays, -1 for unknown types).
func (t ValueType) fixedSize() int {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	case ValueString, ValueArray:
		return 0
	}
	return -1
}

// Value is a metadata value. V holds the Go value: uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64 or float64 for
// scalars, and for arrays (Type == ValueArray) a slice of one of those
// ([]string, []int32, []float32, ...), whose element type is Elem.
type Value struct {
	Type ValueType
	Elem ValueType
	V    any
}

// ValueOf wraps a Go value of one of the supported types (see Value) in a
// Value, inferring the GGUF type. Plain int, uint and nested slices are
// rejected: GGUF needs an explicit width.
func ValueOf(v any) (Value, error) {
	switch x := v.(type) {
	case Value:
		return x, nil
	case uint8:
		return Value{Type: ValueUint8, V: x}, nil
	case int8:
		return Value{Type: ValueInt8, V: x}, nil
	case uint16:
		return Value{Type: ValueUint16, V: x}, nil
	case int16:
		return Value{Type: ValueInt16, V: x}, nil
	case uint32:
		return Value{Type: ValueUint32, V: x}, nil
	case int32:
		return Value{Type: ValueInt32, V: x}, nil
	case float32:
		return Value{Type: ValueFloat32, V: x}, nil
	case bool:
		return Value{Type: ValueBool, V: x}, nil
	case string:
		return Value{Type: ValueString, V: x}, nil
	case uint64:
		return Value{Type: ValueUint64, V: x}, nil
	case int64:
		return Value{Type: ValueInt64, V: x}, nil
	case float64:
		return Value{Type: ValueFloat64, V: x}, nil
	case []uint8:
		return Value{Type: ValueArray, Elem: ValueUint8, V: x}, nil
	case []int8:
		return Value{Type: ValueArray, Elem: ValueInt8, V: x}, nil
	case []uint16:
		return Value{Type: ValueArray, Elem: ValueUint16, V: x}, nil
	case []int16:
		return Value{Type: ValueArray, Elem: ValueInt16, V: x}, nil
	case []uint32:
		return Value{Type: ValueArray, Elem: ValueUint32, V: x}, nil
	case []int32:
		return Value{Type: ValueArray, Elem: ValueInt32, V: x}, nil
	case []float32:
		return Value{Type: ValueArray, Elem: ValueFloat32, V: x}, nil
	case []bool:
		return Value{Type: ValueArray, Elem: ValueBool, V: x}, nil
	case []string:
		return Value{Type: ValueArray, Elem: ValueString, V: x}, nil
	case []uint64:
		return Value{Type: ValueArray, Elem: ValueUint64, V: x}, nil
	case []int64:
		return Value{Type: ValueArray, Elem: ValueInt64, V: x}, nil
	case []float64:
		return Value{Type: ValueArray, Elem: ValueFloat64, V: x}, nil
	}
	return Value{}, fmt.Errorf("unsupported metadata value type %T (use a sized type such as uint32 or []int32)", v)
}

// Len is the number of array elements (1 for a scalar).
func (v Value) Len() int {
	if v.Type != ValueArray {
		return 1
	}
	switch x := v.V.(type) {
	case []uint8:
		return len(x)
	case []int8:
		return len(x)
	case []uint16:
		return len(x)
	case []int16:
		return len(x)
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	case []float32:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	}
	return 0
}

// Int returns an integer scalar (of any width) as int64.
func (v Value) Int() (int64, bool) {
	switch x := v.V.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// Float returns a float scalar as float64.
func (v Value) Float() (float64, bool) {
	switch x := v.V.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Str returns a string scalar.
func (v Value) Str() (string, bool) {
	s, ok := v.V.(string)
	return s, ok
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}
