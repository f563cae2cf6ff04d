//! The rules an item must follow before it can be registered.
//!
//! Each check points at the offending token and says what to write instead;
//! independent mistakes are reported together.

use crate::args::{ItemArgs, MainArgs};
use crate::ast::{Function, Param, Static};
use syn::{FnArg, ItemFn, LitStr, Type};

/// Collects independent errors so that one compile shows them all.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Rules shared by every function the manhole calls: it must be a plain,
/// synchronous, non-generic free function (a command may be `async`).
fn check_plain_fn(item: &ItemFn, attribute: &str, errors: &mut Errors) {
    let sig = &item.sig;
    if let Some(token) = sig.asyncness.as_ref().filter(|_| attribute != COMMAND) {
        errors.push(syn::Error::new_spanned(
            token,
            format!("{attribute} cannot be used on an `async fn`: it is called on a manhole thread, outside any runtime, where nothing can be awaited (a `block_on` there panics with \"there is no reactor running\"); read state that your async code keeps up to date (an atomic, a lock) from a plain `fn`, or write a `#[manhole::command] async fn` with the `tokio` feature of `manhole`, which runs on your runtime"),
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            token,
            format!("{attribute} cannot be used on an `unsafe fn`; wrap the unsafe call in a safe `fn` that upholds its contract"),
        ));
    }
    if let Some(param) = sig.generics.params.first() {
        errors.push(syn::Error::new_spanned(
            param,
            format!("{attribute} cannot be used on a generic function; the manhole needs concrete types, so write a non-generic `fn` that calls this one"),
        ));
    } else if let Some(clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            clause,
            format!("{attribute} cannot be used on a function with a `where` clause; remove it"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            format!("{attribute} cannot be used on a variadic function"),
        ));
    }
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        errors.push(syn::Error::new_spanned(
            receiver,
            format!("{attribute} goes on a free function, not a method; `self` has no value here, so write a free `fn` that reaches the object (for example through a static) and calls this method"),
        ));
    }
}

const COMMAND: &str = "#[manhole::command]";

fn check_name(name: Option<&LitStr>, errors: &mut Errors) {
    let Some(name) = name else { return };
    let value = name.value();
    let valid = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if !valid {
        errors.push(syn::Error::new_spanned(
            name,
            "a manhole name is one word of letters, digits, `_`, `-`, `.` or `:`, such as `name = \"reload-config\"`",
        ));
    }
}

fn check_param(param: &Param<'_>, errors: &mut Errors) {
    if param.ident.is_none() {
        if let FnArg::Typed(typed) = param.arg {
            errors.push(syn::Error::new_spanned(
                &typed.pat,
                "a command parameter needs a plain name, as in `count: u32`; destructure inside the body instead",
            ));
        }
    }
    match strip_group(param.optional.unwrap_or(param.ty)) {
        Type::Reference(reference) => errors.push(syn::Error::new_spanned(
            reference,
            "command parameters are parsed from text into owned values; use `String` instead of `&str`, or another owned type that implements `FromStr`",
        )),
        Type::ImplTrait(impl_trait) => errors.push(syn::Error::new_spanned(
            impl_trait,
            "command parameters need a concrete type that implements `FromStr`; `impl Trait` cannot be parsed from text",
        )),
        _ => {}
    }
}

fn strip_group(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => strip_group(&group.elem),
        Type::Paren(paren) => strip_group(&paren.elem),
        other => other,
    }
}

pub(crate) fn command(function: &Function<'_>, args: &ItemArgs) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_name(args.name.as_ref(), &mut errors);
    check_plain_fn(function.item, COMMAND, &mut errors);
    for param in &function.params {
        check_param(param, &mut errors);
    }
    // Optional parameters can only be left out from the end, so every
    // `Option<T>` must come after all the required parameters.
    if let Some(last_required) = function.params.iter().rposition(|p| p.optional.is_none()) {
        for param in &function.params[..last_required] {
            if param.optional.is_some() {
                errors.push(syn::Error::new_spanned(
                    param.ty,
                    "an optional parameter must come after every required one, because arguments are matched by position; move it to the end",
                ));
            }
        }
    }
    errors.finish()
}

pub(crate) fn inspect_fn(function: &Function<'_>, args: &ItemArgs) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_name(args.name.as_ref(), &mut errors);
    check_no_writable(args, &mut errors);
    check_args(Some(function), args, &mut errors);
    check_plain_fn(function.item, "#[manhole::inspect]", &mut errors);
    if let Some(param) = function.params.first() {
        errors.push(syn::Error::new_spanned(
            param.arg,
            "#[manhole::inspect] reads a value and takes no parameters; to count and time this function's calls, write #[manhole::inspect(calls)], and to call it from the manhole, use #[manhole::command]",
        ));
    }
    if let syn::ReturnType::Default = function.item.sig.output {
        errors.push(syn::Error::new_spanned(
            &function.item.sig.ident,
            "#[manhole::inspect] shows the value a function returns, and this one returns nothing; add a return type such as `-> usize`, or use #[manhole::command]",
        ));
    }
    errors.finish()
}

/// `calls` counts a function's calls, so it goes on functions only.
fn check_no_calls(args: &ItemArgs, errors: &mut Errors) {
    if let Some(calls) = &args.calls {
        errors.push(syn::Error::new_spanned(
            calls,
            "`calls` counts and times a function's calls, and a static is never called; remove `calls` to read the static with `get`",
        ));
    }
}

/// `writable` replaces a static's value, so it goes on statics only.
fn check_no_writable(args: &ItemArgs, errors: &mut Errors) {
    if let Some(writable) = &args.writable {
        errors.push(syn::Error::new_spanned(
            writable,
            "`writable` goes on a static, and a function has no value to replace; to change state from the manhole, write a #[manhole::command]",
        ));
    }
}

/// `args` shows an async call's arguments in `tasks`: it needs `calls`, on
/// an `async fn`.
fn check_args(function: Option<&Function<'_>>, args: &ItemArgs, errors: &mut Errors) {
    let Some(word) = &args.args else {
        return;
    };
    if args.calls.is_none() {
        errors.push(syn::Error::new_spanned(
            word,
            "`args` shows each in-flight call's arguments, which only a counted function has; write #[manhole::inspect(calls, args)]",
        ));
    } else if function.is_some_and(|function| function.item.sig.asyncness.is_none()) {
        errors.push(syn::Error::new_spanned(
            word,
            "`args` shows the arguments of an `async fn`'s calls in `tasks`, where a sync function's calls are not listed; leave `args` out",
        ));
    }
    // Every name given is a parameter (or `self`, for a method).
    let Some(function) = function else {
        return;
    };
    let sig = &function.item.sig;
    let mut known: Vec<String> = Vec::new();
    for input in &sig.inputs {
        match input {
            syn::FnArg::Receiver(_) => known.push("self".to_owned()),
            syn::FnArg::Typed(typed) => {
                if let syn::Pat::Ident(pat) = &*typed.pat {
                    known.push(pat.ident.to_string());
                }
            }
        }
    }
    let named = match &args.shown {
        crate::args::ArgsShown::Only(names) | crate::args::ArgsShown::Skip(names) => {
            names.as_slice()
        }
        _ => &[],
    };
    for name in named {
        if !known.iter().any(|known| name == known) {
            errors.push(syn::Error::new_spanned(
                name,
                format!(
                    "`{name}` is not a parameter of `{}`; its parameters are: {}",
                    sig.ident,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
}

pub(crate) fn inspect_calls(function: &Function<'_>, args: &ItemArgs) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_name(args.name.as_ref(), &mut errors);
    check_no_writable(args, &mut errors);
    check_args(Some(function), args, &mut errors);
    if let Some(attr) = function
        .item
        .attrs
        .iter()
        .find(|attr| attr.path().is_ident("track_caller"))
    {
        errors.push(syn::Error::new_spanned(
            attr,
            "#[manhole::inspect(calls)] runs the body inside a closure, where `#[track_caller]` cannot see the caller; remove one of the two",
        ));
    }
    if let Some(token) = &function.item.sig.constness {
        errors.push(syn::Error::new_spanned(
            token,
            "#[manhole::inspect(calls)] cannot count the calls of a `const fn`, which may run at compile time where there is no clock or counter; remove `const`, or count a non-const function that calls it",
        ));
    }
    errors.finish()
}

pub(crate) fn inspect_static(item: &Static<'_>, args: &ItemArgs) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_name(args.name.as_ref(), &mut errors);
    check_no_calls(args, &mut errors);
    check_args(None, args, &mut errors);
    if let syn::StaticMutability::Mut(token) = &item.item.mutability {
        errors.push(syn::Error::new_spanned(
            token,
            "#[manhole::inspect] cannot read a `static mut`, because another thread may be writing it; use an atomic (`AtomicU64`) or a `Mutex`/`RwLock` instead",
        ));
    }
    errors.finish()
}

pub(crate) fn main(item: &ItemFn) -> syn::Result<()> {
    let mut errors = Errors::default();
    let sig = &item.sig;
    if sig.ident != "main" {
        errors.push(syn::Error::new_spanned(
            &sig.ident,
            "#[manhole::main] goes on `fn main`; elsewhere, call `manhole::Options::new().install()`",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            token,
            "#[manhole::main] cannot be used on an `unsafe fn main`",
        ));
    }
    if let Some(param) = sig.generics.params.first() {
        errors.push(syn::Error::new_spanned(
            param,
            "`fn main` cannot be generic; remove the generic parameter",
        ));
    }
    if let Some(arg) = sig.inputs.first() {
        errors.push(syn::Error::new_spanned(
            arg,
            "`fn main` takes no arguments; read them with `std::env::args()` instead",
        ));
    }
    if sig.asyncness.is_none() && expanded_by_tokio_main(item) {
        errors.push(syn::Error::new_spanned(
            &sig.ident,
            "#[manhole::main] must go above #[tokio::main], so that the manhole is installed inside the runtime that async commands run on; write `#[manhole::main]` first, then `#[tokio::main]`, then `async fn main`",
        ));
    }
    errors.finish()
}

/// Whether `#[tokio::main]` was written above `#[manhole::main]` and has
/// already turned `async fn main` into `fn main` whose body builds the
/// runtime: `let body = async { ... };` first, then a `block_on(body)`.
fn expanded_by_tokio_main(item: &ItemFn) -> bool {
    let Some(syn::Stmt::Local(local)) = item.block.stmts.first() else {
        return false;
    };
    let binds_body = matches!(&local.pat, syn::Pat::Ident(pat) if pat.ident == "body");
    let is_async = local
        .init
        .as_ref()
        .is_some_and(|init| matches!(*init.expr, syn::Expr::Async(_)));
    binds_body && is_async && mentions(&item.block.stmts[1..], "block_on")
}

fn mentions(stmts: &[syn::Stmt], name: &str) -> bool {
    fn walk(tokens: proc_macro2::TokenStream, name: &str) -> bool {
        tokens.into_iter().any(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) => ident == name,
            proc_macro2::TokenTree::Group(group) => walk(group.stream(), name),
            _ => false,
        })
    }
    stmts
        .iter()
        .any(|stmt| walk(quote::ToTokens::to_token_stream(stmt), name))
}

pub(crate) fn main_args(args: &MainArgs) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Some(path) = args
        .socket_path
        .as_ref()
        .filter(|path| path.value().is_empty())
    {
        errors.push(syn::Error::new_spanned(
            path,
            "`socket_path` cannot be empty; leave it out for the default `/tmp/manhole-{pid}`",
        ));
    }
    for signal in [&args.activate_on, &args.oneshot_on].into_iter().flatten() {
        if !looks_like_signal(&signal.value()) {
            errors.push(syn::Error::new_spanned(
                signal,
                "expected a signal that can be caught, such as \"USR1\", \"SIGUSR2\" or \"RTMIN+3\", or its number",
            ));
        }
    }
    if let Some(stacks) = &args.watchdog_stacks {
        if !WATCHDOG_STACKS.contains(&stacks.value().as_str()) {
            errors.push(syn::Error::new_spanned(
                stacks,
                "expected \"short\" (the program's frames, at most 20 lines), \"full\" (every frame) or \"none\" (the report's first line alone)",
            ));
        }
    }
    // Refused whichever signals they name, and reported at the key written
    // second, as a duplicate option is: that is where the conflict starts.
    let mut signal_keys = args
        .keys
        .iter()
        .filter(|key| *key == "activate_on" || *key == "oneshot_on");
    if let (Some(first), Some(second)) = (signal_keys.next(), signal_keys.next()) {
        errors.push(syn::Error::new_spanned(
            second,
            format!("`{second}` cannot be combined with `{first}`: a signal either activates the manhole for good (`activate_on`) or opens one session per signal (`oneshot_on`); keep one of them"),
        ));
    }
    errors.finish()
}

/// What `watchdog_stacks` takes, as `manhole::WatchdogStacks::from_name`
/// reads it.
pub(crate) const WATCHDOG_STACKS: &[&str] = &["short", "full", "none"];

fn signal_stem(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    upper
        .strip_prefix("SIG")
        .map(str::to_owned)
        .unwrap_or(upper)
}

/// A loose check; the runtime knows the numbers and checks for real.
fn looks_like_signal(name: &str) -> bool {
    let stem = signal_stem(name);
    !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
        && !["KILL", "STOP", "9", "19"].contains(&stem.as_str())
}
