//! The sections of a raw crash report, each written straight to the
//! report's outputs. Compromised context throughout: no allocation, no
//! lock waited on, memory of uncertain state read only where a fault would
//! be caught by the handler's per-section recovery.

use super::signal_safe as safe;
use super::state::{
    signal_name, Prepared, FIRST_LINE, ORIGINAL_CONTEXT, ORIGINAL_INFO, ORIGINAL_SIGNAL, OUT,
    REPORT_PATH, SHARED,
};
use std::sync::atomic::Ordering;

/// Section 1: `manhole crash report (raw): SIGSEGV (SEGV_MAPERR) at
/// address 0x0, thread 1234 "main"`.
pub(super) fn first_line() {
    let signal = ORIGINAL_SIGNAL.load(Ordering::Acquire);
    let info = ORIGINAL_INFO.load(Ordering::Acquire);
    let (code, address) = if info.is_null() {
        (0, 0)
    } else {
        // SAFETY: the kernel's siginfo for this signal.
        unsafe { ((*info).si_code, (*info).si_addr() as u64) }
    };
    let sp = SHARED.sp.load(Ordering::Acquire);
    let overflow = signal == libc::SIGSEGV && code > 0 && address.abs_diff(sp) < 64 * 1024;
    OUT.str(FIRST_LINE);
    OUT.str(" (raw): ");
    if overflow {
        OUT.str("stack overflow (");
        OUT.str(signal_name(signal));
        OUT.str(", ");
        OUT.str(code_name(signal, code));
        OUT.str(", fault address ");
        OUT.hex(address, 1);
        OUT.str(" in the guard page)");
    } else {
        OUT.str(signal_name(signal));
        OUT.str(" (");
        OUT.str(code_name(signal, code));
        OUT.str(")");
        if code > 0 && signal != libc::SIGABRT {
            OUT.str(" at address ");
            OUT.hex(address, 1);
        }
    }
    let tid = safe::gettid();
    OUT.str(", thread ");
    OUT.dec(tid as u64);
    OUT.str(" \"");
    thread_name(tid);
    OUT.str("\"");
    if signal == libc::SIGABRT {
        static TEXT: safe::ReporterOnly<[u8; 512]> = safe::ReporterOnly::new([0; 512]);
        // SAFETY: only the reporting thread gets here.
        let text = unsafe { &mut *TEXT.get() };
        let len = super::panics::last_panic_of(tid, text);
        if len > 0 {
            OUT.str(", after the panic ");
            OUT.bytes(&text[..len]);
        }
    }
    OUT.str("\n");
}

fn code_name(signal: libc::c_int, code: libc::c_int) -> &'static str {
    match (signal, code) {
        (_, libc::SI_USER) => "SI_USER",
        (_, libc::SI_TKILL) => "SI_TKILL",
        (_, libc::SI_QUEUE) => "SI_QUEUE",
        (_, 0x80) => "SI_KERNEL",
        (libc::SIGSEGV, 1) => "SEGV_MAPERR",
        (libc::SIGSEGV, 2) => "SEGV_ACCERR",
        (libc::SIGBUS, 1) => "BUS_ADRALN",
        (libc::SIGBUS, 2) => "BUS_ADRERR",
        (libc::SIGBUS, 3) => "BUS_OBJERR",
        (libc::SIGILL, 1) => "ILL_ILLOPC",
        (libc::SIGILL, 2) => "ILL_ILLOPN",
        (libc::SIGILL, 3) => "ILL_ILLADR",
        (libc::SIGILL, 4) => "ILL_ILLTRP",
        (libc::SIGILL, 5) => "ILL_PRVOPC",
        (libc::SIGILL, 6) => "ILL_PRVREG",
        (libc::SIGILL, 7) => "ILL_COPROC",
        (libc::SIGILL, 8) => "ILL_BADSTK",
        (libc::SIGFPE, 1) => "FPE_INTDIV",
        (libc::SIGFPE, 2) => "FPE_INTOVF",
        (libc::SIGFPE, 3) => "FPE_FLTDIV",
        (libc::SIGFPE, 4) => "FPE_FLTOVF",
        (libc::SIGFPE, 5) => "FPE_FLTUND",
        (libc::SIGFPE, 6) => "FPE_FLTRES",
        (libc::SIGFPE, 7) => "FPE_FLTINV",
        (libc::SIGFPE, 8) => "FPE_FLTSUB",
        _ => "code unknown",
    }
}

/// A thread's name from `/proc/self/task/TID/comm`.
fn thread_name(tid: libc::pid_t) {
    let mut path = safe::PathBuf::<64>::new();
    let mut name = [0u8; 32];
    if path.push(b"/proc/self/task/") && path.push_dec(tid as u64) && path.push(b"/comm") {
        if let Some(read) = safe::read_file(path.as_cstr(), &mut name) {
            let end = read.iter().position(|&b| b == b'\n').unwrap_or(read.len());
            OUT.bytes(&read[..end]);
            return;
        }
    }
    OUT.str("?");
}

/// Section 2: time, pid, executable and build id, uptime, version, file.
pub(super) fn header(prepared: &Prepared) {
    let (seconds, millis) = safe::now();
    OUT.str("time: ");
    OUT.time(seconds, millis);
    OUT.str("\npid: ");
    // SAFETY: getpid cannot fail.
    OUT.dec(unsafe { libc::getpid() } as u64);
    OUT.str("\nexecutable: ");
    OUT.bytes(prepared.exe.as_bytes());
    if !prepared.build_id.is_empty() {
        OUT.str(" (build id ");
        OUT.str(&prepared.build_id);
        OUT.str(")");
    }
    let uptime_ms = prepared.uptime_at_install_ms
        + safe::monotonic_ms().saturating_sub(prepared.monotonic_at_install_ms);
    OUT.str("\nuptime: ");
    OUT.dec(uptime_ms / 1000);
    OUT.str(".");
    let mut tenths = [0u8; 20];
    OUT.bytes(safe::decimal(uptime_ms % 1000 / 100, &mut tenths));
    OUT.str(" s\nmanhole: ");
    OUT.str(env!("CARGO_PKG_VERSION"));
    OUT.str("\nreport file: ");
    // SAFETY: only the reporting thread writes or reads it.
    let path = unsafe { &*REPORT_PATH.get() }.as_bytes();
    if path.is_empty() {
        OUT.str("none (stderr only)");
    } else {
        OUT.bytes(path);
    }
    OUT.str("\n");
}

/// Section 3, raw: the program counter, then the words on the stack that
/// point into code: candidates for return addresses, which the symbolised
/// report replaces with an exact unwind.
pub(super) fn crashing_thread(prepared: &Prepared) {
    let tid = safe::gettid();
    OUT.str("\ncrashing thread ");
    OUT.dec(tid as u64);
    OUT.str(" \"");
    thread_name(tid);
    OUT.str("\" (raw frames: the pc, then words on the stack that point into code)\n");
    let pc = SHARED.pc.load(Ordering::Acquire);
    raw_frame(prepared, 0, pc);
    let mut sp = SHARED.sp.load(Ordering::Acquire);
    let mut frames = 1;
    static WORDS: safe::ReporterOnly<[u64; 512]> = safe::ReporterOnly::new([0; 512]);
    // SAFETY: only the reporting thread gets here.
    let words = unsafe { &mut *WORDS.get() };
    let mut scanned = 0;
    while frames < 64 && scanned < 64 * 1024 {
        // SAFETY: `words` is plain memory of its own size.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                words.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(words),
            )
        };
        let copied = safe::read_memory(sp as usize, bytes);
        if copied < 8 {
            // The page at sp may be the guard page; go on from the next.
            let next = (sp | 0xfff) + 1;
            if scanned == 0 && next > sp {
                scanned += (next - sp) as usize;
                sp = next;
                continue;
            }
            break;
        }
        for &word in &words[..copied / 8] {
            if frames < 64 && in_code(prepared, word) {
                raw_frame(prepared, frames, word);
                frames += 1;
            }
        }
        scanned += copied;
        sp += copied as u64;
    }
}

fn in_code(prepared: &Prepared, address: u64) -> bool {
    prepared
        .modules
        .iter()
        .any(|module| module.code.iter().any(|range| range.contains(&address)))
}

/// `  #3 0x... /path/to/module+0x1a2b`
fn raw_frame(prepared: &Prepared, index: usize, address: u64) {
    OUT.str("  #");
    OUT.dec(index as u64);
    OUT.str(" ");
    OUT.hex(address, 1);
    let module = prepared
        .modules
        .iter()
        .find(|module| module.code.iter().any(|range| range.contains(&address)));
    if let Some(module) = module {
        OUT.str(" ");
        OUT.str(&module.path);
        OUT.str("+");
        OUT.hex(address - module.bias, 1);
    }
    OUT.str("\n");
}

/// Section 4: the registers at the fault.
pub(super) fn registers() {
    let context = ORIGINAL_CONTEXT.load(Ordering::Acquire);
    OUT.str("\nregisters:\n");
    if context.is_null() {
        OUT.str("  (none)\n");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        const NAMES: [(&str, libc::c_int); 18] = [
            ("rax", libc::REG_RAX),
            ("rbx", libc::REG_RBX),
            ("rcx", libc::REG_RCX),
            ("rdx", libc::REG_RDX),
            ("rsi", libc::REG_RSI),
            ("rdi", libc::REG_RDI),
            ("rbp", libc::REG_RBP),
            ("rsp", libc::REG_RSP),
            ("r8", libc::REG_R8),
            ("r9", libc::REG_R9),
            ("r10", libc::REG_R10),
            ("r11", libc::REG_R11),
            ("r12", libc::REG_R12),
            ("r13", libc::REG_R13),
            ("r14", libc::REG_R14),
            ("r15", libc::REG_R15),
            ("rip", libc::REG_RIP),
            ("eflags", libc::REG_EFL),
        ];
        // SAFETY: the kernel's ucontext for this signal.
        let gregs = unsafe { (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        for (index, (name, register)) in NAMES.iter().enumerate() {
            OUT.str("  ");
            OUT.str(name);
            OUT.str(&"       "[..7usize.saturating_sub(name.len())]);
            OUT.hex(gregs[*register as usize] as u64, 16);
            if index % 4 == 3 || index + 1 == NAMES.len() {
                OUT.str("\n");
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: the kernel's ucontext for this signal.
        let mcontext = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext };
        for (index, value) in mcontext.regs.iter().enumerate() {
            OUT.str("  x");
            OUT.dec(index as u64);
            OUT.str(if index < 10 { "  " } else { " " });
            OUT.hex(*value, 16);
            if index % 4 == 3 {
                OUT.str("\n");
            }
        }
        OUT.str("  sp  ");
        OUT.hex(mcontext.sp, 16);
        OUT.str("  pc  ");
        OUT.hex(mcontext.pc, 16);
        OUT.str("\n");
    }
}

/// Section 5, raw: every thread with its name and state.
pub(super) fn threads() {
    static ENTRIES: safe::ReporterOnly<[u8; 8192]> = safe::ReporterOnly::new([0; 8192]);
    OUT.str("\nthreads:\n");
    // SAFETY: a constant path; open is async-signal-safe.
    let dir = unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        OUT.str("  (cannot read /proc/self/task)\n");
        return;
    }
    loop {
        // SAFETY: getdents64 fills the static buffer, which only the
        // reporting thread uses.
        let read =
            unsafe { libc::syscall(libc::SYS_getdents64, dir, ENTRIES.get().cast::<u8>(), 8192) };
        if read <= 0 {
            break;
        }
        // SAFETY: the bytes getdents64 wrote.
        let entries = unsafe { &(&*ENTRIES.get())[..read as usize] };
        let mut at = 0;
        while at + 19 < entries.len() {
            let record = u16::from_ne_bytes([entries[at + 16], entries[at + 17]]) as usize;
            if record == 0 {
                break;
            }
            let name = &entries[at + 19..(at + record).min(entries.len())];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = parse_decimal(name) {
                OUT.str("  thread ");
                OUT.dec(tid);
                OUT.str(" \"");
                thread_name(tid as libc::pid_t);
                OUT.str("\" (");
                OUT.str(thread_state(tid as libc::pid_t));
                OUT.str(")\n");
            }
            at += record;
        }
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(dir) };
}

fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0')),
    )
}

fn thread_state(tid: libc::pid_t) -> &'static str {
    let mut path = safe::PathBuf::<64>::new();
    static STAT: safe::ReporterOnly<[u8; 512]> = safe::ReporterOnly::new([0; 512]);
    // SAFETY: only the reporting thread gets here, one call at a time.
    let stat = unsafe { &mut *STAT.get() };
    if !(path.push(b"/proc/self/task/") && path.push_dec(tid as u64) && path.push(b"/stat")) {
        return "?";
    }
    let Some(read) = safe::read_file(path.as_cstr(), stat) else {
        return "gone";
    };
    let Some(close) = read.iter().rposition(|&b| b == b')') else {
        return "?";
    };
    read.get(close + 2)
        .map_or("?", |&state| crate::os::procfs::state_word(state as char))
}

/// Section 6: the in-flight calls of `#[inspect(calls)]` functions, as
/// the `tasks` tree: each call's children under it, with ages and the
/// thread polling each.
pub(super) fn in_flight_calls() {
    const MAX_CALLS: usize = 1024;
    struct Call {
        id: usize,
        parent: usize,
        name: &'static str,
        age_ns: u64,
        polling: Option<(i32, u64)>,
        args: Option<crate::instrument::inflight::CallArgs>,
    }
    static CALLS: safe::ReporterOnly<[Option<Call>; MAX_CALLS]> =
        safe::ReporterOnly::new([const { None }; MAX_CALLS]);
    OUT.str("\nin-flight calls:\n");
    // SAFETY: only the one reporting thread uses the static.
    let calls = unsafe { &mut *CALLS.get() };
    let mut count = 0;
    let mut more = 0u64;
    crate::instrument::inflight::each_in_crash(&mut |view| {
        if count < MAX_CALLS {
            calls[count] = Some(Call {
                id: view.id,
                parent: view.parent,
                name: view.name,
                age_ns: view.age_ns,
                polling: view.polling,
                args: view.args,
            });
            count += 1;
        } else {
            more += 1;
        }
    });
    let calls = &calls[..count];
    if calls.is_empty() {
        OUT.str("  (none)\n");
    }
    let is_listed = |id: usize| calls.iter().flatten().any(|call| call.id == id);
    let write = |call: &Call, depth: usize| {
        for _ in 0..=depth {
            OUT.str("  ");
        }
        OUT.str(call.name);
        if let Some(args) = &call.args {
            OUT.str("(");
            OUT.str(args.as_str());
            OUT.str(")");
        }
        OUT.str("  ");
        seconds(call.age_ns);
        match call.polling {
            Some((tid, for_ns)) => {
                OUT.str(", polled on thread ");
                OUT.dec(tid as u64);
                OUT.str(" for ");
                seconds(for_ns);
            }
            None => OUT.str(", waiting"),
        }
        OUT.str("\n");
    };
    // Depth-first from each root, without a stack of our own: a call's
    // children are found by scanning, which is quadratic but bounded.
    for root in calls.iter().flatten() {
        if root.parent != 0 && root.parent != root.id && is_listed(root.parent) {
            continue;
        }
        write(root, 0);
        let mut path = [0usize; 32];
        path[0] = root.id;
        let mut depth = 0;
        let mut after = [0usize; 32];
        loop {
            let next = calls.iter().flatten().find(|call| {
                call.parent == path[depth] && call.id != path[depth] && call.id > after[depth]
            });
            match next {
                Some(child) if depth + 1 < path.len() => {
                    after[depth] = child.id;
                    write(child, depth + 1);
                    depth += 1;
                    path[depth] = child.id;
                    after[depth] = 0;
                }
                _ if depth == 0 => break,
                _ => depth -= 1,
            }
        }
    }
    if more > 0 {
        OUT.str("  (and ");
        OUT.dec(more);
        OUT.str(" more)\n");
    }
}

/// `4.5 s`, to a tenth.
fn seconds(nanos: u64) {
    let tenths = nanos / 100_000_000;
    OUT.dec(tenths / 10);
    OUT.str(".");
    OUT.dec(tenths % 10);
    OUT.str(" s");
}

/// Section 7: the last events of the tracing layer's ring, at most 50.
pub(super) fn recent_log_events() {
    OUT.str("\nrecent log events:\n");
    #[cfg(feature = "tracing")]
    {
        let mut any = false;
        let complete = crate::tracing::each_recent_in_crash(50, &mut |record| {
            any = true;
            let time = record.time();
            OUT.str("  ");
            OUT.time(time as i64, ((time.fract()) * 1000.0) as u32);
            OUT.str(" ");
            OUT.str(record.level());
            OUT.str(" ");
            OUT.str(record.target());
            OUT.str(": ");
            OUT.str(record.message());
            for (key, value) in record.fields() {
                OUT.str(" ");
                OUT.str(key);
                OUT.str("=");
                match value {
                    serde_json::Value::String(text) => OUT.str(text),
                    other => OUT.display(other),
                }
            }
            OUT.str("\n");
        });
        if !complete {
            OUT.str("  (the log's lock was held at the crash)\n");
        } else if !any {
            OUT.str("  (none kept)\n");
        }
    }
    #[cfg(not(feature = "tracing"))]
    OUT.str("  (manhole's `tracing` feature is off)\n");
}

/// Section 8: the flight recorder's last minute: CPU, resident memory and
/// threads (first, lowest, highest, last), and the calls of the busiest
/// counted functions over it, from the mirror that
/// [`crate::report::history`] keeps in atomics for this. Plain loops and
/// one static summary, for a small alternate signal stack.
pub(super) fn last_minute() {
    use crate::report::history::{self, mirrored_name, LastMinute, MIRRORED_FUNCTIONS, NONE};
    let (now, _) = safe::now();
    let since = u64::try_from(now).unwrap_or(0).saturating_sub(60);
    let mut minute = LastMinute {
        points: 0,
        span_s: 0,
        figures: [[NONE; 4]; 3],
        calls: [0; MIRRORED_FUNCTIONS],
        errors: [0; MIRRORED_FUNCTIONS],
    };
    history::last_minute(since, &mut minute);
    OUT.str("\nthe last minute (the flight recorder, a point a second):\n");
    if minute.points == 0 {
        OUT.str(
            "  (nothing recorded: the recorder is off, or the process is younger than a second)\n",
        );
        return;
    }
    OUT.str("  ");
    OUT.dec(minute.points);
    OUT.str(" points over ");
    OUT.dec(minute.span_s);
    OUT.str(" s\n");
    const LABELS: [&str; 3] = ["cpu    ", "rss    ", "threads"];
    const UNITS: [&str; 3] = [" %", " MiB", ""];
    const NAMES: [&str; 4] = ["first", "lowest", "highest", "last"];
    let mut figure = 0;
    while figure < 3 {
        OUT.str("  ");
        OUT.str(LABELS[figure]);
        let mut which = 0;
        while which < 4 {
            let value = minute.figures[figure][which];
            OUT.str("  ");
            OUT.str(NAMES[which]);
            OUT.str(" ");
            if value == NONE {
                OUT.str("-");
            } else if figure < 2 {
                OUT.dec(value / 10);
                OUT.str(".");
                OUT.dec(value % 10);
            } else {
                OUT.dec(value);
            }
            OUT.str(UNITS[figure]);
            which += 1;
        }
        OUT.str("\n");
        figure += 1;
    }
    // The busiest counted functions: most calls over the minute, up to 5.
    let mut shown = [false; MIRRORED_FUNCTIONS];
    let mut listed = 0;
    while listed < 5 {
        let mut busiest = MIRRORED_FUNCTIONS;
        let mut index = 0;
        while index < MIRRORED_FUNCTIONS {
            if !shown[index]
                && minute.calls[index] > 0
                && (busiest == MIRRORED_FUNCTIONS || minute.calls[index] > minute.calls[busiest])
            {
                busiest = index;
            }
            index += 1;
        }
        if busiest == MIRRORED_FUNCTIONS {
            break;
        }
        shown[busiest] = true;
        OUT.str(if listed == 0 {
            "  calls over it: "
        } else {
            ", "
        });
        OUT.str(mirrored_name(busiest).unwrap_or("?"));
        OUT.str(" ");
        OUT.dec(minute.calls[busiest]);
        OUT.str(" (");
        OUT.dec(minute.errors[busiest]);
        OUT.str(" errors)");
        listed += 1;
    }
    if listed > 0 {
        OUT.str("\n");
    }
}

/// Section 9: the modules, with base addresses and build ids.
pub(super) fn module_list(prepared: &Prepared) {
    OUT.str("\nmodules:\n");
    for module in &prepared.modules {
        OUT.str("  ");
        OUT.hex(module.bias, 12);
        OUT.str(" ");
        OUT.str(&module.path);
        if !module.build_id.is_empty() {
            OUT.str(" build id ");
            OUT.str(&module.build_id);
        }
        OUT.str("\n");
    }
}
