//! A SQLite VFS for power-loss tests: it wraps the default (`unix`) VFS and keeps every write
//! to a main database or WAL file in a volatile cache (shared by every handle on the same
//! file, like an OS page cache) until that file is synced. A `kill -9` of the process then
//! loses exactly what a power cut would: every write that was not synced. The files on disk
//! hold only synced data, and the next process opens them with the plain VFS.
//!
//! Test support only (this crate allows `unsafe`, which the workspace forbids elsewhere): a
//! dev-dependency of the journal's fault tests.
//!
//! ```no_run
//! plexspaces_powerloss_vfs::register().expect("vfs");
//! plexspaces_powerloss_vfs::set_pause(plexspaces_powerloss_vfs::Pause::MidSync(5));
//! // open SQLite with vfs = plexspaces_powerloss_vfs::NAME ...
//! ```
//!
//! What it does not model: a write that reaches disk torn below the size SQLite wrote
//! (sector tearing) except through [`Pause::MidSync`], which stops a sync after half of the
//! cached writes reached the file (a torn commit), and reordering across syncs.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use libsqlite3_sys as ffi;

/// The VFS name to open SQLite with.
pub const NAME: &str = "plexspaces-powerloss";
const NAME_C: &CStr = c"plexspaces-powerloss";

/// Where the process stops (prints `PAUSED <point> pending=<bytes>` and hangs, for the
/// parent to `kill -9` it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// Never.
    None,
    /// Right after the n-th write to a WAL file went into the cache (unsynced).
    AfterWalWrites(u64),
    /// In the n-th sync of a WAL file that has cached writes, after half of them reached
    /// the file and before the fsync: a torn commit on disk.
    MidSync(u64),
}

enum Op {
    Write(i64, Vec<u8>),
    Truncate(i64),
}

/// Unsynced operations of one file, in order.
#[derive(Default)]
struct Cache {
    ops: Vec<Op>,
}

impl Cache {
    fn pending_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Write(_, d) => d.len() as u64,
                Op::Truncate(_) => 0,
            })
            .sum()
    }

    fn logical_size(&self, real: i64) -> i64 {
        self.ops.iter().fold(real, |size, op| match op {
            Op::Write(off, d) => size.max(off + d.len() as i64),
            Op::Truncate(t) => *t,
        })
    }
}

struct Global {
    real: *mut ffi::sqlite3_vfs,
    files: Mutex<HashMap<Vec<u8>, Arc<Mutex<Cache>>>>,
    pause: Mutex<Pause>,
    wal_writes: AtomicU64,
    wal_syncs: AtomicU64,
}

// SAFETY: `real` points to SQLite's default VFS, a static structure that lives for the
// whole process and is only read.
unsafe impl Send for Global {}
// SAFETY: as above; everything else is behind a mutex or atomic.
unsafe impl Sync for Global {}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Registers the VFS (once per process; later calls do nothing). Not the default VFS: a
/// connection uses it only when it names [`NAME`].
pub fn register() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: sqlite3_initialize and sqlite3_vfs_find may be called at any time; the
        // returned default VFS is static.
        let real = unsafe {
            ffi::sqlite3_initialize();
            ffi::sqlite3_vfs_find(std::ptr::null())
        };
        if real.is_null() {
            return Err("SQLite has no default VFS".into());
        }
        let global = GLOBAL.get_or_init(|| Global {
            real,
            files: Mutex::new(HashMap::new()),
            pause: Mutex::new(Pause::None),
            wal_writes: AtomicU64::new(0),
            wal_syncs: AtomicU64::new(0),
        });
        // SAFETY: `real` is valid (checked above); the copy keeps its methods, which do not
        // depend on the VFS pointer they are called with beyond the copied fields.
        let mut vfs: ffi::sqlite3_vfs = unsafe { *global.real };
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = NAME_C.as_ptr();
        vfs.szOsFile = std::mem::size_of::<ShimFile>() as c_int;
        vfs.xOpen = Some(shim_open);
        let vfs: &'static mut ffi::sqlite3_vfs = Box::leak(Box::new(vfs));
        // SAFETY: `vfs` is a valid, leaked (never freed) VFS structure.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(format!("sqlite3_vfs_register failed: {rc}"))
        }
    })
    .clone()
}

/// Sets where the process pauses.
pub fn set_pause(pause: Pause) {
    if let Some(g) = GLOBAL.get() {
        *g.pause.lock().unwrap_or_else(|p| p.into_inner()) = pause;
    }
}

/// Bytes written but not synced, over every file.
pub fn pending_bytes() -> u64 {
    let Some(g) = GLOBAL.get() else { return 0 };
    let files = g.files.lock().unwrap_or_else(|p| p.into_inner());
    files
        .values()
        .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).pending_bytes())
        .sum()
}

fn global() -> Option<&'static Global> {
    GLOBAL.get()
}

fn hang(point: &str) -> ! {
    println!("PAUSED {point} pending={}", pending_bytes());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    real_layout: std::alloc::Layout,
    /// `Arc::into_raw` of the file's cache; null for files written through (temp files).
    cache: *const Mutex<Cache>,
    wal: bool,
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(shim_close),
    xRead: Some(shim_read),
    xWrite: Some(shim_write),
    xTruncate: Some(shim_truncate),
    xSync: Some(shim_sync),
    xFileSize: Some(shim_file_size),
    xLock: Some(shim_lock),
    xUnlock: Some(shim_unlock),
    xCheckReservedLock: Some(shim_check_reserved_lock),
    xFileControl: Some(shim_file_control),
    xSectorSize: Some(shim_sector_size),
    xDeviceCharacteristics: Some(shim_device_characteristics),
    xShmMap: Some(shim_shm_map),
    xShmLock: Some(shim_shm_lock),
    xShmBarrier: Some(shim_shm_barrier),
    xShmUnmap: Some(shim_shm_unmap),
    xFetch: Some(shim_fetch),
    xUnfetch: Some(shim_unfetch),
};

/// The shim of a file SQLite handed us.
///
/// # Safety
/// `file` must be a file this VFS opened.
unsafe fn shim<'a>(file: *mut ffi::sqlite3_file) -> &'a mut ShimFile {
    // SAFETY: SQLite allocated szOsFile = size_of::<ShimFile>() bytes for it, and
    // shim_open initialised them.
    unsafe { &mut *file.cast::<ShimFile>() }
}

/// The real file's methods.
///
/// # Safety
/// `real` must be an open file of the real VFS.
unsafe fn real_methods<'a>(real: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: an open real file has valid methods.
    unsafe { &*(*real).pMethods }
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

unsafe extern "C" fn shim_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(g) = global() else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: `file` has room for a ShimFile (szOsFile); start with no methods so that
    // SQLite does not call xClose if this open fails.
    unsafe { (*file).pMethods = std::ptr::null() };
    // SAFETY: the real VFS is valid for the whole process.
    let real_vfs = unsafe { &*g.real };
    let Ok(layout) = std::alloc::Layout::from_size_align(real_vfs.szOsFile.max(8) as usize, 16)
    else {
        return ffi::SQLITE_NOMEM;
    };
    // SAFETY: the layout has a non-zero size.
    let real = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<ffi::sqlite3_file>();
    if real.is_null() {
        return ffi::SQLITE_NOMEM;
    }
    let Some(open) = real_vfs.xOpen else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: forwarding SQLite's own arguments to the real VFS with a file of its size.
    let rc = unsafe { open(g.real, name, real, flags, out_flags) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(real.cast(), layout) };
        return rc;
    }
    let cached = flags & (ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL) != 0 && !name.is_null();
    let cache = if cached {
        // SAFETY: SQLite passes a NUL-terminated name.
        let key = unsafe { CStr::from_ptr(name) }.to_bytes().to_vec();
        let mut files = g.files.lock().unwrap_or_else(|p| p.into_inner());
        Arc::into_raw(files.entry(key).or_default().clone())
    } else {
        std::ptr::null()
    };
    let shim = ShimFile {
        base: ffi::sqlite3_file { pMethods: &METHODS },
        real,
        real_layout: layout,
        cache,
        wal: flags & ffi::SQLITE_OPEN_WAL != 0,
    };
    // SAFETY: `file` has room for a ShimFile.
    unsafe { file.cast::<ShimFile>().write(shim) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn shim_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes files this VFS opened.
    let s = unsafe { shim(file) };
    // SAFETY: the real file is open.
    let rc = match unsafe { real_methods(s.real) }.xClose {
        // SAFETY: closing the real file once.
        Some(close) => unsafe { close(s.real) },
        None => ffi::SQLITE_OK,
    };
    // SAFETY: allocated in shim_open with this layout; not used after close.
    unsafe { std::alloc::dealloc(s.real.cast(), s.real_layout) };
    if !s.cache.is_null() {
        // SAFETY: from Arc::into_raw in shim_open; released once. The cache itself stays
        // in the global map (the "page cache" outlives the handle).
        drop(unsafe { Arc::from_raw(s.cache) });
        s.cache = std::ptr::null();
    }
    rc
}

unsafe extern "C" fn shim_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: a file of this VFS.
    let s = unsafe { shim(file) };
    // SAFETY: the real file is open.
    let m = unsafe { real_methods(s.real) };
    let (Some(read), Some(size)) = (m.xRead, m.xFileSize) else {
        return ffi::SQLITE_IOERR;
    };
    if s.cache.is_null() {
        // SAFETY: forwarding.
        return unsafe { read(s.real, buf, amt, off) };
    }
    // SAFETY: the cache lives while the handle is open.
    let cache = lock(unsafe { &*s.cache });
    // SAFETY: forwarding (a short read zero-fills the rest).
    let rc = unsafe { read(s.real, buf, amt, off) };
    if rc != ffi::SQLITE_OK && rc != ffi::SQLITE_IOERR_SHORT_READ {
        return rc;
    }
    if cache.ops.is_empty() {
        return rc;
    }
    let mut real_size: ffi::sqlite3_int64 = 0;
    // SAFETY: forwarding.
    let rc = unsafe { size(s.real, &mut real_size) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: SQLite's buffer has `amt` bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), amt as usize) };
    let end = off + i64::from(amt);
    // bytes past the real file are zero (the real read zero-filled them)
    for op in &cache.ops {
        match op {
            Op::Write(o, d) => {
                let (from, to) = ((*o).max(off), (o + d.len() as i64).min(end));
                if from < to {
                    out[(from - off) as usize..(to - off) as usize]
                        .copy_from_slice(&d[(from - o) as usize..(to - o) as usize]);
                }
            }
            Op::Truncate(t) => {
                let from = (*t).max(off);
                if from < end {
                    out[(from - off) as usize..].fill(0);
                }
            }
        }
    }
    let logical = cache.logical_size(real_size);
    if end > logical {
        let from = logical.max(off);
        out[(from - off) as usize..].fill(0);
        return ffi::SQLITE_IOERR_SHORT_READ;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn shim_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: a file of this VFS.
    let s = unsafe { shim(file) };
    if s.cache.is_null() {
        // SAFETY: the real file is open; forwarding.
        return match unsafe { real_methods(s.real) }.xWrite {
            Some(write) => unsafe { write(s.real, buf, amt, off) },
            None => ffi::SQLITE_IOERR_WRITE,
        };
    }
    // SAFETY: SQLite's buffer has `amt` bytes.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), amt as usize) }.to_vec();
    {
        // SAFETY: the cache lives while the handle is open.
        let mut cache = lock(unsafe { &*s.cache });
        cache.ops.push(Op::Write(off, data));
    }
    if s.wal {
        if let Some(g) = global() {
            let n = g.wal_writes.fetch_add(1, Ordering::SeqCst) + 1;
            let pause = *g.pause.lock().unwrap_or_else(|p| p.into_inner());
            if pause == Pause::AfterWalWrites(n) {
                hang("wal_write");
            }
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn shim_truncate(
    file: *mut ffi::sqlite3_file,
    size: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: a file of this VFS.
    let s = unsafe { shim(file) };
    if s.cache.is_null() {
        // SAFETY: forwarding.
        return match unsafe { real_methods(s.real) }.xTruncate {
            Some(t) => unsafe { t(s.real, size) },
            None => ffi::SQLITE_IOERR,
        };
    }
    // SAFETY: the cache lives while the handle is open.
    lock(unsafe { &*s.cache }).ops.push(Op::Truncate(size));
    ffi::SQLITE_OK
}

/// Applies cached operations to the real file.
///
/// # Safety
/// `real` must be an open file of the real VFS.
unsafe fn apply(real: *mut ffi::sqlite3_file, ops: &[Op]) -> c_int {
    // SAFETY: the caller's promise.
    let m = unsafe { real_methods(real) };
    let (Some(write), Some(truncate)) = (m.xWrite, m.xTruncate) else {
        return ffi::SQLITE_IOERR;
    };
    for op in ops {
        // SAFETY: forwarding with buffers we own.
        let rc = unsafe {
            match op {
                Op::Write(off, d) => write(real, d.as_ptr().cast(), d.len() as c_int, *off),
                Op::Truncate(t) => truncate(real, *t),
            }
        };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn shim_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: a file of this VFS.
    let s = unsafe { shim(file) };
    // SAFETY: the real file is open.
    let Some(sync) = (unsafe { real_methods(s.real) }).xSync else {
        return ffi::SQLITE_IOERR;
    };
    if !s.cache.is_null() {
        // SAFETY: the cache lives while the handle is open.
        let mut cache = lock(unsafe { &*s.cache });
        if !cache.ops.is_empty() {
            let ops = std::mem::take(&mut cache.ops);
            if s.wal {
                if let Some(g) = global() {
                    let n = g.wal_syncs.fetch_add(1, Ordering::SeqCst) + 1;
                    let pause = *g.pause.lock().unwrap_or_else(|p| p.into_inner());
                    if pause == Pause::MidSync(n) {
                        let half = ops.len() / 2;
                        // SAFETY: the real file is open.
                        unsafe { apply(s.real, &ops[..half]) };
                        cache.ops = ops.into_iter().skip(half).collect();
                        drop(cache);
                        hang("mid_sync");
                    }
                }
            }
            // SAFETY: the real file is open.
            let rc = unsafe { apply(s.real, &ops) };
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        // keep the cache locked through the fsync: readers see cache or synced data
        // SAFETY: forwarding.
        return unsafe { sync(s.real, flags) };
    }
    // SAFETY: forwarding.
    unsafe { sync(s.real, flags) }
}

unsafe extern "C" fn shim_file_size(
    file: *mut ffi::sqlite3_file,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: a file of this VFS.
    let s = unsafe { shim(file) };
    // SAFETY: the real file is open.
    let Some(size) = (unsafe { real_methods(s.real) }).xFileSize else {
        return ffi::SQLITE_IOERR;
    };
    if s.cache.is_null() {
        // SAFETY: forwarding.
        return unsafe { size(s.real, out) };
    }
    // SAFETY: the cache lives while the handle is open.
    let cache = lock(unsafe { &*s.cache });
    let mut real: ffi::sqlite3_int64 = 0;
    // SAFETY: forwarding.
    let rc = unsafe { size(s.real, &mut real) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: SQLite's out pointer.
    unsafe { *out = cache.logical_size(real) };
    ffi::SQLITE_OK
}

macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: a file of this VFS.
            let s = unsafe { shim(file) };
            // SAFETY: the real file is open; forwarding SQLite's arguments.
            match unsafe { real_methods(s.real) }.$method {
                Some(f) => unsafe { f(s.real $(, $arg)*) },
                None => $missing,
            }
        }
    };
}

forward!(shim_lock, xLock, (level: c_int), ffi::SQLITE_IOERR);
forward!(shim_unlock, xUnlock, (level: c_int), ffi::SQLITE_IOERR);
forward!(shim_check_reserved_lock, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_IOERR);
forward!(shim_sector_size, xSectorSize, (), 4096);
forward!(shim_device_characteristics, xDeviceCharacteristics, (), 0);
forward!(shim_shm_map, xShmMap, (pg: c_int, pgsz: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR);
forward!(shim_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), ffi::SQLITE_IOERR);
forward!(shim_shm_unmap, xShmUnmap, (delete: c_int), ffi::SQLITE_OK);

unsafe extern "C" fn shim_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: a file of this VFS.
    let s = unsafe { shim(file) };
    // SAFETY: forwarding.
    if let Some(f) = unsafe { real_methods(s.real) }.xShmBarrier {
        unsafe { f(s.real) }
    }
}

unsafe extern "C" fn shim_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: a file of this VFS.
    let s = unsafe { shim(file) };
    if !s.cache.is_null() && op == ffi::SQLITE_FCNTL_SIZE_HINT {
        // growing the real file ahead would bypass the cache
        return ffi::SQLITE_OK;
    }
    // SAFETY: forwarding.
    match unsafe { real_methods(s.real) }.xFileControl {
        Some(f) => unsafe { f(s.real, op, arg) },
        None => ffi::SQLITE_NOTFOUND,
    }
}

/// No memory mapping: every read goes through `xRead` (and the cache).
unsafe extern "C" fn shim_fetch(
    _file: *mut ffi::sqlite3_file,
    _off: ffi::sqlite3_int64,
    _amt: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite's out pointer.
    unsafe { *out = std::ptr::null_mut() };
    ffi::SQLITE_OK
}

unsafe extern "C" fn shim_unfetch(
    _file: *mut ffi::sqlite3_file,
    _off: ffi::sqlite3_int64,
    _p: *mut c_void,
) -> c_int {
    ffi::SQLITE_OK
}
