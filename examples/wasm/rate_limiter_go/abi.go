// The canonical ABI of the world plexspaces:actor/actor (../../../wit/actor.wit), written by
// hand for Go >= 1.24 (`//go:wasmexport`), with no generated bindings and no module outside
// the standard library. scripts/build-go-guest embeds the WIT and adapts this core module
// (GOOS=wasip1, -buildmode=c-shared) to a component with jco's WASI preview1 reactor adapter.
//
// Memory: Go's heap is the linear memory and its collector does not move objects, so a Go
// byte slice's address is a valid guest pointer while the slice is referenced. Memory the
// host asks for (cabi_realloc, for the arguments of an export) is held in `lent` until the
// export has copied the arguments out; what an export returns is held in `returned` until
// the next export call (the host reads it right after the call returns).

package main

import (
	"fmt"
	"unsafe"
)

// Error codes: the cases of `enum error-code` in wit/actor.wit, in order.
const (
	codeBadRequest  = 0
	codeNotFound    = 1
	codeDenied      = 2
	codeTimeout     = 3
	codeUnavailable = 4
	codeUnsupported = 5
	codeConflict    = 6
	codeInternal    = 7
)

// actorError is `record error { code: error-code, message: string }`.
type actorError struct {
	code    uint8
	message string
}

func (e *actorError) Error() string { return e.message }

var (
	lent     [][]byte
	returned [][]byte
	// The return area of the exports (at most 16 bytes, align 4) and of `now-ms`
	// (result<u64, error>: 24 bytes, align 8).
	retArea    [4]uint64
	importArea [4]uint64
)

func ptrOf(b []byte) uint32 {
	if len(b) == 0 {
		return uint32(uintptr(unsafe.Pointer(&retArea[3])))
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func bytesAt(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
}

func put32(at uintptr, v uint32) { *(*uint32)(unsafe.Pointer(at)) = v }

func get32(at uintptr) uint32 { return *(*uint32)(unsafe.Pointer(at)) }

// keep returns b, held until the next export call.
func keep(b []byte) []byte {
	returned = append(returned, b)
	return b
}

// enter starts an export call: what the previous call returned is no longer needed.
func enter() { returned = returned[:0] }

// copied copies an argument the host wrote into memory from cabi_realloc.
func copied(ptr, n uint32) []byte {
	return append([]byte(nil), bytesAt(ptr, n)...)
}

// done releases the argument memory of the current call.
func done() { lent = lent[:0] }

//go:wasmexport cabi_realloc
func cabiRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	if align == 0 {
		align = 1
	}
	buf := make([]byte, newSize+align)
	base := uintptr(unsafe.Pointer(&buf[0]))
	off := (uintptr(align) - base%uintptr(align)) % uintptr(align)
	if oldPtr != 0 && oldSize > 0 {
		copy(buf[off:], bytesAt(oldPtr, min(oldSize, newSize)))
	}
	lent = append(lent, buf)
	return uint32(base + off)
}

// The return area of `result<_, error>` (and of the error case of `result<list<u8>,
// error>`): the discriminant at 0, the error's code at 4, its message at 8 (ptr) and 12 (len).
func writeResult(ok []byte, okIsList bool, err *actorError) uint32 {
	area := uintptr(unsafe.Pointer(&retArea[0]))
	retArea = [4]uint64{}
	if err == nil {
		*(*uint8)(unsafe.Pointer(area)) = 0
		if okIsList {
			ok = keep(ok)
			put32(area+4, ptrOf(ok))
			put32(area+8, uint32(len(ok)))
		}
	} else {
		msg := keep([]byte(err.message))
		*(*uint8)(unsafe.Pointer(area)) = 1
		*(*uint8)(unsafe.Pointer(area + 4)) = err.code
		put32(area+8, ptrOf(msg))
		put32(area+12, uint32(len(msg)))
	}
	return uint32(area)
}

// stringList lays out a `list<string>`: (ptr, len) pairs, each pointing at the bytes.
func stringList(items []string) (uint32, uint32) {
	pairs := keep(make([]byte, 8*len(items)+8))
	base := uintptr(unsafe.Pointer(&pairs[0]))
	base += (4 - base%4) % 4
	for i, s := range items {
		b := keep([]byte(s))
		put32(base+uintptr(8*i), ptrOf(b))
		put32(base+uintptr(8*i+4), uint32(len(b)))
	}
	return uint32(base), uint32(len(items))
}

//go:wasmexport describe
func exportDescribe() uint32 {
	enter()
	d := describe()
	area := uintptr(unsafe.Pointer(&retArea[0]))
	fp, fl := stringList(d.facets)
	hp, hl := stringList(d.handlers)
	put32(area, fp)
	put32(area+4, fl)
	put32(area+8, hp)
	put32(area+12, hl)
	return uint32(area)
}

//go:wasmexport init
func exportInit(ptr, n uint32) uint32 {
	enter()
	config := copied(ptr, n)
	done()
	return writeResult(nil, false, initActor(config))
}

//go:wasmexport handle
func exportHandle(tptr, tlen, pptr, plen uint32) uint32 {
	enter()
	msgType := string(copied(tptr, tlen))
	payload := copied(pptr, plen)
	done()
	// A panic goes on (the call traps, the supervisor restarts the activation), but first
	// its message goes to the node's log: the adapter discards the guest's stderr.
	defer func() {
		if r := recover(); r != nil {
			logError(fmt.Sprintf("panic in handler %q: %v", msgType, r))
			panic(r)
		}
	}()
	reply, err := handle(msgType, payload)
	return writeResult(reply, true, err)
}

//go:wasmexport snapshot
func exportSnapshot() uint32 {
	enter()
	state := keep(snapshot())
	area := uintptr(unsafe.Pointer(&retArea[0]))
	put32(area, ptrOf(state))
	put32(area+4, uint32(len(state)))
	return uint32(area)
}

//go:wasmexport restore
func exportRestore(ptr, n uint32) uint32 {
	enter()
	state := copied(ptr, n)
	done()
	return writeResult(nil, false, restore(state))
}

// now-ms: func() -> result<u64, error>; the host writes the result at `ret`: the
// discriminant at 0, the u64 at 8, or the error's code at 8 and message at 12/16.
//
//go:wasmimport plexspaces:actor/durability@0.1.0 now-ms
func importNowMs(ret uint32)

// nowMs is the host's journaled clock.
func nowMs() (uint64, *actorError) {
	importArea = [4]uint64{}
	area := uintptr(unsafe.Pointer(&importArea[0]))
	importNowMs(uint32(area))
	if *(*uint8)(unsafe.Pointer(area)) == 0 {
		return *(*uint64)(unsafe.Pointer(area + 8)), nil
	}
	code := *(*uint8)(unsafe.Pointer(area + 8))
	msg := string(copied(get32(area+12), get32(area+16)))
	done()
	return 0, &actorError{code: code, message: msg}
}

// log: func(level: level, message: string); level 4 is `error`.
//
//go:wasmimport plexspaces:actor/logging@0.1.0 log
func importLog(level, ptr, n uint32)

func logError(message string) {
	b := []byte(message)
	importLog(4, ptrOf(b), uint32(len(b)))
}

// descriptor is `record descriptor { facets: list<string>, handlers: list<string> }`.
type descriptor struct {
	facets   []string
	handlers []string
}

// A c-shared (reactor) module: the host calls the exports; main never runs.
func main() {}
