//! Token generation. Generated code names only `::manhole::__private::...`
//! and `::core::...`, wraps its helpers in `const _: () = { ... };` and
//! prefixes their names with `__manhole_`.

use crate::args::{ArgsShown, ItemArgs, MainArgs};
use crate::ast::{self, Function, Static};
use crate::{render, valid};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Item, ItemFn, ReturnType};

/// The user's item, then the error: the item stays defined, so one mistake
/// does not cascade into "cannot find function" errors elsewhere.
fn with_error(mut item: TokenStream, error: syn::Error) -> TokenStream {
    item.extend(error.into_compile_error());
    item
}

pub(crate) fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    try_command(args, item.clone()).unwrap_or_else(|error| with_error(item, error))
}

pub(crate) fn inspect(args: TokenStream, item: TokenStream) -> TokenStream {
    try_inspect(args, item.clone()).unwrap_or_else(|error| with_error(item, error))
}

pub(crate) fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    try_main(args, item.clone()).unwrap_or_else(|error| with_error(item, error))
}

fn try_command(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = ItemArgs::parse_command(args)?;
    let item: Item = syn::parse2(item)?;
    let Item::Fn(item_fn) = &item else {
        let (kind, keyword) = ast::describe(&item);
        return Err(syn::Error::new_spanned(
            keyword,
            format!("#[manhole::command] goes on a free function, not on {kind}; to show a value, use #[manhole::inspect] on a static"),
        ));
    };
    let function = Function::from_item(item_fn);
    valid::command(&function, &args)?;
    Ok(expand_command(&function, &args))
}

fn try_inspect(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = ItemArgs::parse_inspect(args)?;
    let item: Item = syn::parse2(item)?;
    match &item {
        Item::Static(item_static) => {
            let target = Static::from_item(item_static);
            valid::inspect_static(&target, &args)?;
            Ok(expand_inspect_static(&target, &args))
        }
        Item::Fn(item_fn) if args.calls.is_some() => {
            let function = Function::from_item(item_fn);
            valid::inspect_calls(&function, &args)?;
            Ok(expand_inspect_calls(&function, &args))
        }
        Item::Fn(item_fn) => {
            let function = Function::from_item(item_fn);
            valid::inspect_fn(&function, &args)?;
            Ok(expand_inspect_fn(&function, &args))
        }
        other => {
            let (kind, keyword) = ast::describe(other);
            Err(syn::Error::new_spanned(
                keyword,
                format!("#[manhole::inspect] goes on a `static` or on a function with no parameters, not on {kind}; put it on a static that holds the value"),
            ))
        }
    }
}

fn try_main(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = MainArgs::parse(args)?;
    let item: Item = syn::parse2(item)?;
    let Item::Fn(item_fn) = &item else {
        let (kind, keyword) = ast::describe(&item);
        return Err(syn::Error::new_spanned(
            keyword,
            format!("#[manhole::main] goes on `fn main`, not on {kind}"),
        ));
    };
    valid::main(item_fn)?;
    valid::main_args(&args)?;
    Ok(expand_main(item_fn, &args))
}

/// `Meta::new(...)`: the name, doc and source location every registered
/// item carries.
fn meta(name: &str, doc: &str, explicit: bool) -> TokenStream {
    let meta = quote! {
        ::manhole::__private::Meta::new(
            #name,
            #doc,
            ::core::module_path!(),
            ::core::file!(),
            ::core::line!(),
        )
    };
    // A name given with `name = "..."` is shown as written.
    if explicit {
        quote!(#meta.named_explicitly())
    } else {
        meta
    }
}

fn registered_name(args: &ItemArgs, ident: &syn::Ident) -> String {
    args.name
        .as_ref()
        .map_or_else(|| ident.unraw().to_string(), syn::LitStr::value)
}

/// Turns the function's return value into a reply: a `Result` whose error is
/// `Display` becomes an error reply, anything else must be `Serialize`. The
/// call is spanned at the return type, so a type that is neither is reported
/// there.
fn reply(output: &ReturnType) -> TokenStream {
    let span = match output {
        ReturnType::Default => Span::call_site(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    quote_spanned! {span=>
        (&__manhole_returned).__manhole_reply_kind().reply(&__manhole_returned)
    }
}

fn return_type_text(output: &ReturnType) -> String {
    match output {
        ReturnType::Default => "()".to_owned(),
        ReturnType::Type(_, ty) => render::tokens(ty),
    }
}

fn expand_command(function: &Function<'_>, args: &ItemArgs) -> TokenStream {
    let item = function.item;
    let ident = &item.sig.ident;
    let meta = meta(
        &registered_name(args, ident),
        &function.doc,
        args.name.is_some(),
    );
    let locals: Vec<_> = (0..function.params.len())
        .map(|index| format_ident!("__manhole_arg{}", index))
        .collect();
    let parses = function
        .params
        .iter()
        .zip(&locals)
        .enumerate()
        .map(|(index, (param, local))| match param.optional {
            Some(inner) => quote_spanned! {inner.span()=>
                let #local = __manhole_args.optional::<#inner>(#index)?;
            },
            None => {
                let ty = param.ty;
                quote_spanned! {ty.span()=>
                    let #local = __manhole_args.required::<#ty>(#index)?;
                }
            }
        });
    let params = function.params.iter().map(|param| {
        let name = param
            .ident
            .map(|ident| ident.unraw().to_string())
            .unwrap_or_default();
        let ty = render::tokens(param.optional.unwrap_or(param.ty));
        let optional = param.optional.is_some();
        quote!(::manhole::__private::Param::new(#name, #ty, #optional))
    });
    let returns = return_type_text(&item.sig.output);
    let reply = reply(&item.sig.output);
    // An `async fn` is awaited on the program's tokio runtime; its value
    // becomes the reply there. `Tokio` is spanned at `async`, so that
    // without manhole's `tokio` feature the error points at it.
    let call = match &item.sig.asyncness {
        Some(token) => {
            let tokio = quote_spanned!(token.span=> ::manhole::__private::Tokio);
            quote! {
                ::manhole::__private::run_async(#tokio, __manhole_args, async move {
                    let __manhole_returned = #ident(#(#locals),*).await;
                    #reply
                })
            }
        }
        None => quote! {
            let __manhole_returned = #ident(#(#locals),*);
            #reply
        },
    };
    quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            fn __manhole_invoke(
                __manhole_args: &mut ::manhole::__private::Args<'_>,
            ) -> ::manhole::__private::Outcome {
                #[allow(unused_imports)]
                use ::manhole::__private::{ReplyKindResult as _, ReplyKindValue as _};
                ::manhole::__private::guarded(move || {
                    #(#parses)*
                    #call
                })
            }
            ::manhole::__private::inventory::submit! {
                ::manhole::__private::Command::new(
                    #meta,
                    &[#(#params),*],
                    #returns,
                    __manhole_invoke,
                )
            }
        };
    }
}

fn expand_inspect_static(target: &Static<'_>, args: &ItemArgs) -> TokenStream {
    let item = target.item;
    let ident = &item.ident;
    let meta = meta(
        &registered_name(args, ident),
        &target.doc,
        args.name.is_some(),
    );
    let ty_text = render::tokens(&item.ty);
    let read = quote_spanned! {item.ty.span()=>
        __manhole_static.__manhole_read_kind().read(__manhole_static)
    };
    // Spanned at the type, so a type `set` cannot write is reported there.
    let (write_fn, writable) = match &args.writable {
        Some(_) => (
            quote_spanned! {item.ty.span()=>
                fn __manhole_write(
                    __manhole_value: ::manhole::__private::JsonValue,
                ) -> ::manhole::__private::Outcome {
                    ::manhole::__private::guarded(|| {
                        ::manhole::__private::Writable::write_value(&#ident, __manhole_value)
                    })
                }
            },
            quote!(.writable(__manhole_write)),
        ),
        None => (TokenStream::new(), TokenStream::new()),
    };
    quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            fn __manhole_read() -> ::manhole::__private::Outcome {
                #[allow(unused_imports)]
                use ::manhole::__private::{ReadKindLock as _, ReadKindValue as _};
                ::manhole::__private::guarded(|| {
                    let __manhole_static = &#ident;
                    #read
                })
            }
            fn __manhole_place() -> (usize, usize) {
                (
                    ::core::ptr::addr_of!(#ident).cast::<()>() as usize,
                    ::manhole::__private::size_of_static(&#ident),
                )
            }
            ::manhole::__private::inventory::submit! {
                ::manhole::__private::Inspect::new(
                    #meta,
                    #ty_text,
                    ::manhole::__private::InspectKind::Static,
                    __manhole_read,
                )
                .at(__manhole_place)
                #writable
            }
            #write_fn
        };
    }
}

/// Leaves the function's signature as it is and wraps its body: the
/// counters live in a `static` inside the body (which is also the only place
/// an `impl` block lets them live), and the body runs as a `FnOnce` closure,
/// or an `async` block, so that every `return` and `?` yields the value the
/// timer inspects for `Err`. A panic or a dropped future is seen by the
/// timer's `Drop`.
fn expand_inspect_calls(function: &Function<'_>, args: &ItemArgs) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function.item;
    let (inner, outer): (Vec<_>, Vec<_>) = attrs
        .iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)));
    let meta = meta(
        &registered_name(args, &sig.ident),
        &function.doc,
        args.name.is_some(),
    );
    let signature = format!(
        "({}){}",
        render::tokens(&sig.inputs),
        match &sig.output {
            ReturnType::Default => String::new(),
            ReturnType::Type(_, ty) => format!(" -> {}", render::tokens(ty)),
        }
    );
    let counters = quote! {
        static __MANHOLE_CALLS: ::manhole::__private::CallStats =
            ::manhole::__private::CallStats::new();
        ::manhole::__private::inventory::submit! {
            ::manhole::__private::Inspect::calls(#meta, #signature, &__MANHOLE_CALLS)
        }
    };
    // A function that never returns has no value to inspect: its timer
    // sees its panic when it unwinds.
    if let ReturnType::Type(_, ty) = &sig.output {
        if matches!(**ty, syn::Type::Never(_)) {
            return quote! {
                #(#outer)*
                #vis #sig {
                    #(#inner)*
                    #counters
                    let __manhole_timer = __MANHOLE_CALLS.start_sync();
                    #block
                }
            };
        }
    }
    // The body's type is written out, so that `?` knows what to convert
    // into; each `impl Trait` in it is left to inference.
    let returned = match &sig.output {
        ReturnType::Type(_, ty) => {
            let ty = ast::impl_trait_inferred(ty);
            quote!(#ty)
        }
        ReturnType::Default => quote!(()),
    };
    // Parameters are moved into the body in the order they were declared,
    // as `async fn` does, so that they drop as they would have: in reverse
    // order, at the end of the body. `mut` moves in with them.
    let mut outer_sig = sig.clone();
    let mut rebind = Vec::new();
    for arg in &mut outer_sig.inputs {
        if let syn::FnArg::Typed(typed) = arg {
            if let syn::Pat::Ident(pat) = &mut *typed.pat {
                if pat.by_ref.is_none() && pat.subpat.is_none() {
                    let (mutability, ident) = (pat.mutability.take(), &pat.ident);
                    rebind.push(quote!(let #mutability #ident = #ident;));
                }
            }
        }
    }
    let stmts = &block.stmts;
    let body = if sig.asyncness.is_some() {
        let name = registered_name(args, &sig.ident);
        // With `args`, each named parameter's `Debug` text, taken before
        // the body moves them; a parameter that is not `Debug` is an error
        // at that parameter.
        let call_args = match &args.args {
            Some(_) => {
                let shown = |name: &str| match &args.shown {
                    ArgsShown::All => true,
                    ArgsShown::SkipAll => false,
                    ArgsShown::Only(names) => names.iter().any(|shown| shown == name),
                    ArgsShown::Skip(names) => !names.iter().any(|skipped| skipped == name),
                };
                // `self` first: always when named (it must be `Debug`),
                // and for a bare `args` only when it is `Debug`, which
                // `receiver_arg` finds out.
                let receiver = sig.inputs.iter().find_map(|arg| match arg {
                    syn::FnArg::Receiver(receiver) => Some(receiver),
                    syn::FnArg::Typed(_) => None,
                });
                let mut format = String::new();
                let mut values = Vec::new();
                let mut lock_warnings = Vec::new();
                for arg in &sig.inputs {
                    let syn::FnArg::Typed(typed) = arg else {
                        continue;
                    };
                    let syn::Pat::Ident(pat) = &*typed.pat else {
                        continue;
                    };
                    let ident = &pat.ident;
                    let name = ident.to_string();
                    if !shown(name.trim_start_matches("r#")) {
                        continue;
                    }
                    if !format.is_empty() {
                        format.push_str(", ");
                    }
                    format.push_str(&format!("{}={{:?}}", name.trim_start_matches("r#")));
                    values.push(quote_spanned! {typed.ty.span()=>
                        ::manhole::__private::arg_debug(&#ident)
                    });
                    if let Some(lock) = lock_in_type(&typed.ty) {
                        lock_warnings.push(shown_lock_warning(&name, &lock, &typed.ty));
                    }
                }
                for field in &args.fields {
                    if !format.is_empty() {
                        format.push_str(", ");
                    }
                    format.push_str(&format!("{}={{:?}}", field.name));
                    let value = &field.value;
                    values.push(quote_spanned! {value.span()=>
                        ::manhole::__private::arg_debug(&(#value))
                    });
                }
                let more = !format.is_empty();
                let receiver_part = match receiver {
                    Some(receiver) if shown("self") => {
                        let value = if matches!(args.shown, ArgsShown::All) {
                            quote!({
                                #[allow(unused_imports)]
                                use ::manhole::__private::{NotDebug as _, ViaDebug as _};
                                (&&::manhole::__private::MaybeDebug(&self)).maybe_debug()
                            })
                        } else {
                            quote_spanned! {receiver.span()=>
                                ::core::option::Option::Some(
                                    ::manhole::__private::arg_debug(&self)
                                        as &dyn ::core::fmt::Debug
                                )
                            }
                        };
                        quote!(::manhole::__private::ReceiverArg(#value, #more))
                    }
                    _ => {
                        quote!(::manhole::__private::ReceiverArg(::core::option::Option::None, #more))
                    }
                };
                let format = format!("{{}}{format}");
                quote!({
                    #(#lock_warnings)*
                    ::manhole::__private::CallArgs::new(
                        ::core::format_args!(#format, #receiver_part, #(#values),*)
                    )
                })
            }
            None => quote!(::manhole::__private::NoArgs),
        };
        // Taken in a statement of its own, so that the formatting's
        // borrows end before the `.await` (and the future stays `Send`).
        quote! {{
            let __manhole_args = #call_args;
            ::manhole::__private::in_flight(
                #name,
                &__MANHOLE_CALLS,
                __manhole_args,
                ::manhole::__private::typed_future::<#returned, _>(async move {
                    #(#rebind)*
                    #(#stmts)*
                }),
            )
            .await
        }}
    } else {
        quote! {
            ::manhole::__private::call_once(move || -> #returned {
                #(#rebind)*
                #(#stmts)*
            })
        }
    };
    // A sync call is also marked in flight on its thread, for the
    // watchdog; an async one has its node inside its future.
    let start = if sig.asyncness.is_some() {
        quote!(start)
    } else {
        quote!(start_sync)
    };
    quote! {
        #(#outer)*
        #vis #outer_sig {
            #(#inner)*
            #counters
            let mut __manhole_timer = __MANHOLE_CALLS.#start();
            let __manhole_returned = #body;
            {
                #[allow(unused_imports)]
                use ::manhole::__private::{ReplyKindResult as _, ReplyKindValue as _};
                __manhole_timer.returned(
                    (&__manhole_returned).__manhole_reply_kind().is_err(&__manhole_returned),
                );
            }
            __manhole_returned
        }
    }
}

fn expand_inspect_fn(function: &Function<'_>, args: &ItemArgs) -> TokenStream {
    let item = function.item;
    let ident = &item.sig.ident;
    let meta = meta(
        &registered_name(args, ident),
        &function.doc,
        args.name.is_some(),
    );
    let returns = return_type_text(&item.sig.output);
    let reply = reply(&item.sig.output);
    quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            fn __manhole_read() -> ::manhole::__private::Outcome {
                #[allow(unused_imports)]
                use ::manhole::__private::{ReplyKindResult as _, ReplyKindValue as _};
                ::manhole::__private::guarded(|| {
                    let __manhole_returned = #ident();
                    #reply
                })
            }
            ::manhole::__private::inventory::submit! {
                ::manhole::__private::Inspect::new(
                    #meta,
                    #returns,
                    ::manhole::__private::InspectKind::Computed,
                    __manhole_read,
                )
            }
        };
    }
}

fn expand_main(item: &ItemFn, args: &MainArgs) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let stmts = &block.stmts;
    // syn keeps `#![...]` from the body among the attributes; they go back
    // inside the body.
    let (inner, outer): (Vec<_>, Vec<_>) = attrs
        .iter()
        .partition(|attr| matches!(attr.style, syn::AttrStyle::Inner(_)));
    // The option is in milliseconds, the builder takes a `Duration`.
    let millis = |millis: &syn::LitInt| quote!(::core::time::Duration::from_millis(#millis));
    let reinstall_delay = args.reinstall_delay_ms.as_ref().map(millis);
    let command_timeout = args.command_timeout_ms.as_ref().map(millis);
    let slow_poll = args.slow_poll_ms.as_ref().map(millis);
    let crash_timeout = args.crash_timeout_ms.as_ref().map(millis);
    let watchdog = args.watchdog_ms.as_ref().map(|ms| {
        let threshold = millis(ms);
        quote!(::core::option::Option::Some(#threshold))
    });
    let stuck_call = args.stuck_call_ms.as_ref().map(millis);
    // Validated as one of `short`, `full` and `none`.
    let watchdog_stacks = args.watchdog_stacks.as_ref().map(|stacks| {
        let variant = match stacks.value().as_str() {
            "full" => format_ident!("Full"),
            "none" => format_ident!("None"),
            _ => format_ident!("Short"),
        };
        quote!(::manhole::WatchdogStacks::#variant)
    });
    let options = [
        call_if_given("socket_path", args.socket_path.as_ref()),
        call_if_given("verbose", args.verbose.as_ref()),
        call_if_given("activate_on_named", args.activate_on.as_ref()),
        call_if_given("oneshot_on_named", args.oneshot_on.as_ref()),
        call_if_given("sigmask", args.sigmask.as_ref()),
        call_if_given("reinstall_on_fork", args.reinstall_on_fork.as_ref()),
        call_if_given("reinstall_delay", reinstall_delay.as_ref()),
        call_if_given("command_timeout", command_timeout.as_ref()),
        call_if_given("slow_poll", slow_poll.as_ref()),
        call_if_given("crash_report", args.crash_report.as_ref()),
        call_if_given("crash_file", args.crash_file.as_ref()),
        call_if_given("crash_timeout", crash_timeout.as_ref()),
        call_if_given("watchdog", watchdog.as_ref()),
        call_if_given("stuck_call", stuck_call.as_ref()),
        call_if_given("watchdog_stacks", watchdog_stacks.as_ref()),
        call_if_given("max_reply_bytes", args.max_reply_bytes.as_ref()),
    ];
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            ::manhole::__private::install_for_main(
                ::manhole::__private::Options::new() #(#options)*,
                ::core::option_env!("CARGO_PKG_NAME"),
                ::core::option_env!("CARGO_PKG_VERSION"),
            );
            #(#stmts)*
        }
    }
}

/// `.method(value)` on the `Options` builder for an option that was given;
/// an option left out keeps the builder's default.
fn call_if_given(method: &str, value: Option<&impl ToTokens>) -> Option<TokenStream> {
    let method = format_ident!("{method}");
    value.map(|value| quote!(.#method(#value)))
}

/// The lock types whose `Debug` try-locks them: std's, parking_lot's and
/// tokio's, by their last path segment.
const LOCK_TYPES: &[&str] = &["Mutex", "RwLock", "ReentrantMutex", "FairMutex"];

/// The first lock type named anywhere in `ty` (`Arc<Mutex<T>>`, `&RwLock<T>`),
/// as far as the tokens show; a struct that holds one cannot be seen here.
fn lock_in_type(ty: &syn::Type) -> Option<String> {
    let mut tokens = quote!(#ty).into_iter().collect::<Vec<_>>();
    while let Some(token) = tokens.pop() {
        match token {
            proc_macro2::TokenTree::Ident(ident) => {
                let name = ident.to_string();
                if LOCK_TYPES.contains(&name.as_str()) {
                    return Some(name);
                }
            }
            proc_macro2::TokenTree::Group(group) => tokens.extend(group.stream()),
            _ => {}
        }
    }
    None
}

/// A compile-time warning at a shown parameter whose type is a lock. Stable
/// proc macros cannot emit warnings, so it is the deprecation warning of a
/// constant used there, whose note says what to write instead.
fn shown_lock_warning(name: &str, lock: &str, ty: &syn::Type) -> TokenStream {
    let note = format!(
        "`inspect(calls, args)` shows `{name}`, a `{lock}`: its `Debug` try-locks it on every call. \
         Write `args(skip({name}))`, or show what you need with `fields(NAME = EXPR)`"
    );
    quote_spanned! {ty.span()=>
        {
            #[deprecated(note = #note)]
            #[allow(non_upper_case_globals)]
            const shown_argument_is_a_lock: () = ();
            let () = shown_argument_is_a_lock;
        }
    }
}
