;; A minimal WASI preview1 adapter for Go (GOOS=wasip1) actor components: the
;; `wasi_snapshot_preview1` functions a Go >= 1.24 c-shared module imports, each implemented on
;; WASI 0.2 imports whose results need no memory allocation (see adapter.wit, README.md).
;;
;; Why not the standard reactor adapter: it allocates its state lazily by calling the main
;; module's `cabi_realloc` from inside the first preview1 call. In Go that call arrives while
;; the runtime is on its system stack (during `_initialize`), and re-entering Go there is fatal
;; ("systemstack called from unexpected goroutine"). This adapter keeps no state at all.
;;
;; What it does:
;;   clock_time_get   monotonic (and the CPU-time clocks): monotonic-clock.now; realtime:
;;                    wall-clock.now (its 12-byte result is written at out-8..out+4; the 8
;;                    bytes before `out` are saved and restored around the call)
;;   random_get       wasi:random get-random-u64, 8 bytes at a time
;;   poll_oneoff      sleeps for the shortest clock subscription (monotonic-clock
;;                    subscribe-duration + pollable.block), then reports every subscription
;;                    as ready; file descriptor subscriptions are not waited on
;;   fd_write         accepted and discarded (a guest logs through plexspaces:actor/logging)
;;   fd_read          end of file on stdin
;;   fd_fdstat_get    stdin/stdout/stderr are character devices; other descriptors: EBADF
;;   args, environ    empty; no preopened directories (fd_prestat_get: EBADF)
;;   proc_exit        traps (a Go panic ends the call as a trap; the supervisor restarts)
;;   sched_yield      returns
(module
  (import "env" "memory" (memory 0))
  (import "wasi:random/random@0.2.0" "get-random-u64" (func $random (result i64)))
  (import "wasi:clocks/monotonic-clock@0.2.0" "now" (func $mono (result i64)))
  (import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration" (func $subscribe (param i64) (result i32)))
  (import "wasi:clocks/wall-clock@0.2.0" "now" (func $wall (param i32)))
  (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:io/poll@0.2.0" "[resource-drop]pollable" (func $drop (param i32)))

  (func (export "sched_yield") (result i32) (i32.const 0))

  (func (export "proc_exit") (param i32) (unreachable))

  ;; args_get / environ_get: nothing to write.
  (func (export "args_get") (param i32 i32) (result i32) (i32.const 0))
  (func (export "environ_get") (param i32 i32) (result i32) (i32.const 0))
  ;; args_sizes_get / environ_sizes_get: zero entries, zero bytes.
  (func $zero2 (param $a i32) (param $b i32) (result i32)
    (i32.store (local.get $a) (i32.const 0))
    (i32.store (local.get $b) (i32.const 0))
    (i32.const 0))
  (func (export "args_sizes_get") (param i32 i32) (result i32)
    (call $zero2 (local.get 0) (local.get 1)))
  (func (export "environ_sizes_get") (param i32 i32) (result i32)
    (call $zero2 (local.get 0) (local.get 1)))

  (func (export "clock_time_get") (param $id i32) (param $precision i64) (param $out i32) (result i32)
    (local $saved i64)
    (if (i32.and (i32.eqz (local.get $id)) (i32.ge_u (local.get $out) (i32.const 8)))
      (then
        ;; realtime: datetime { seconds: u64 @ out-8, nanoseconds: u32 @ out }
        (local.set $saved (i64.load (i32.sub (local.get $out) (i32.const 8))))
        (call $wall (i32.sub (local.get $out) (i32.const 8)))
        (i64.store (local.get $out)
          (i64.add
            (i64.mul (i64.load (i32.sub (local.get $out) (i32.const 8))) (i64.const 1000000000))
            (i64.extend_i32_u (i32.load (local.get $out)))))
        (i64.store (i32.sub (local.get $out) (i32.const 8)) (local.get $saved))
        (return (i32.const 0))))
    (i64.store (local.get $out) (call $mono))
    (i32.const 0))

  (func (export "random_get") (param $buf i32) (param $len i32) (result i32)
    (local $i i32)
    (local $r i64)
    (block $done
      (loop $words
        (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 8)) (local.get $len)))
        (i64.store (i32.add (local.get $buf) (local.get $i)) (call $random))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $words)))
    (local.set $r (call $random))
    (block $end
      (loop $bytes
        (br_if $end (i32.ge_u (local.get $i) (local.get $len)))
        (i64.store8 (i32.add (local.get $buf) (local.get $i)) (local.get $r))
        (local.set $r (i64.shr_u (local.get $r) (i64.const 8)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $bytes)))
    (i32.const 0))

  ;; subscription: userdata u64 @0, tag u8 @8, clock id u32 @16, timeout u64 @24, flags u16 @40
  ;; (48 bytes); event: userdata u64 @0, error u16 @8, type u8 @10, nbytes u64 @16,
  ;; flags u16 @24 (32 bytes).
  (func (export "poll_oneoff") (param $in i32) (param $out i32) (param $n i32) (param $nevents i32) (result i32)
    (local $i i32)
    (local $sub i32)
    (local $ev i32)
    (local $timeout i64)
    (local $min i64)
    (local $clock i32)
    (local $p i32)
    (local.set $min (i64.const -1))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $sub (i32.add (local.get $in) (i32.mul (local.get $i) (i32.const 48))))
        (local.set $ev (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 32))))
        (if (i32.eqz (i32.load8_u offset=8 (local.get $sub)))
          (then
            (local.set $clock (i32.const 1))
            (local.set $timeout (i64.load offset=24 (local.get $sub)))
            ;; an absolute monotonic deadline: the time left (none if passed)
            (if (i32.and (i32.load16_u offset=40 (local.get $sub)) (i32.const 1))
              (then
                (local.set $timeout
                  (if (result i64) (i64.gt_u (local.get $timeout) (call $mono))
                    (then (i64.sub (local.get $timeout) (call $mono)))
                    (else (i64.const 0))))))
            (if (i64.lt_u (local.get $timeout) (local.get $min))
              (then (local.set $min (local.get $timeout))))))
        (i64.store (local.get $ev) (i64.load (local.get $sub)))
        (i32.store16 offset=8 (local.get $ev) (i32.const 0))
        (i32.store8 offset=10 (local.get $ev) (i32.load8_u offset=8 (local.get $sub)))
        (i64.store offset=16 (local.get $ev) (i64.const 0))
        (i32.store16 offset=24 (local.get $ev) (i32.const 0))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (if (local.get $clock)
      (then
        (local.set $p (call $subscribe (local.get $min)))
        (call $block (local.get $p))
        (call $drop (local.get $p))))
    (i32.store (local.get $nevents) (local.get $n))
    (i32.const 0))

  ;; fd_write: every byte counts as written; the output is discarded.
  (func (export "fd_write") (param $fd i32) (param $iovs i32) (param $len i32) (param $written i32) (result i32)
    (local $i i32)
    (local $sum i32)
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $sum (i32.add (local.get $sum)
          (i32.load offset=4 (i32.add (local.get $iovs) (i32.mul (local.get $i) (i32.const 8))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.store (local.get $written) (local.get $sum))
    (i32.const 0))

  (func (export "fd_read") (param $fd i32) (param i32 i32) (param $read i32) (result i32)
    (if (local.get $fd) (then (return (i32.const 8))))
    (i32.store (local.get $read) (i32.const 0))
    (i32.const 0))

  (func $std (param $fd i32) (result i32)
    (if (result i32) (i32.le_u (local.get $fd) (i32.const 2))
      (then (i32.const 0))
      (else (i32.const 8))))

  (func (export "fd_close") (param i32) (result i32) (call $std (local.get 0)))

  ;; fdstat: filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting u64 @16
  (func (export "fd_fdstat_get") (param $fd i32) (param $buf i32) (result i32)
    (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (return (i32.const 8))))
    (i32.store8 (local.get $buf) (i32.const 2))
    (i32.store16 offset=2 (local.get $buf) (i32.const 0))
    (i64.store offset=8 (local.get $buf) (i64.const 0))
    (i64.store offset=16 (local.get $buf) (i64.const 0))
    (i32.const 0))

  (func (export "fd_fdstat_set_flags") (param i32 i32) (result i32) (call $std (local.get 0)))

  (func (export "fd_prestat_get") (param i32 i32) (result i32) (i32.const 8))

  (func (export "fd_prestat_dir_name") (param i32 i32 i32) (result i32) (i32.const 8))
)
