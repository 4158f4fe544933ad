//! Procedural macros for PlexSpaces actors. Use them through the `plexspaces` crate.
//!
//! `#[actor]` on an inherent `impl` block turns its `#[handler("name")]` methods into an
//! actor: it generates the message enum `<Type>Msg` (one variant per handler, holding the
//! handler's message type), the reply enum `<Type>Reply`, `From` conversions so
//! `actor_ref.ask(Increment { .. })` works, a `Request` impl per message type so
//! `actor_ref.request(Increment { .. })` returns that handler's own reply type, and the
//! `Actor` impl with a JSON codec so the same handlers serve envelopes (HTTP, gRPC, remote
//! nodes) by `msg_type`.
//!
//! A handler is `async fn name(&mut self, msg: M) -> Result<R, E>` with an optional
//! `ctx: &mut Context<Self>` parameter in any position; `M` and `R` are serde types, `E`
//! converts into `BoxError`. A handler returning a plain `R` cannot fail. Each handler
//! takes its own message type.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{
    parse_macro_input, spanned::Spanned, FnArg, GenericArgument, ImplItem, ItemImpl, LitStr,
    PathArguments, ReturnType, Type,
};

/// Marks a method as a message handler inside an `#[actor]` impl block. On its own it does
/// nothing.
#[proc_macro_attribute]
pub fn handler(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}

struct Handler {
    msg_type: String,
    method: syn::Ident,
    variant: syn::Ident,
    message: Type,
    reply: Type,
    fallible: bool,
    is_async: bool,
    ctx_first: Option<bool>,
}

/// Turns an impl block with `#[handler("name")]` methods into an actor. See the crate docs.
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut block = parse_macro_input!(item as ItemImpl);
    let options = match parse_options(attr.into()) {
        Ok(options) => options,
        Err(e) => return e.to_compile_error().into(),
    };
    match expand(&mut block, &options) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Options {
    /// `#[actor(snapshot)]`: the actor's state snapshots as JSON (`Self: Serialize +
    /// Deserialize`), so durability can checkpoint it.
    snapshot: bool,
}

fn parse_options(attr: TokenStream2) -> syn::Result<Options> {
    let mut options = Options::default();
    if attr.is_empty() {
        return Ok(options);
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("snapshot") {
            options.snapshot = true;
            Ok(())
        } else {
            Err(meta.error("unknown #[actor] option; expected `snapshot`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(options)
}

fn camel(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

fn result_ok_type(ret: &ReturnType) -> syn::Result<(Type, bool)> {
    let ReturnType::Type(_, ty) = ret else {
        return Ok((syn::parse_quote!(()), false));
    };
    if let Type::Path(path) = ty.as_ref() {
        if let Some(last) = path.path.segments.last() {
            if last.ident == "Result" {
                if let PathArguments::AngleBracketed(args) = &last.arguments {
                    if let Some(GenericArgument::Type(ok)) = args.args.first() {
                        return Ok((ok.clone(), true));
                    }
                }
                return Err(syn::Error::new(
                    ty.span(),
                    "handler Result must name its Ok type: Result<Reply, Error>",
                ));
            }
        }
    }
    Ok(((**ty).clone(), false))
}

fn expand(block: &mut ItemImpl, options: &Options) -> syn::Result<TokenStream2> {
    if block.trait_.is_some() {
        return Err(syn::Error::new(
            block.span(),
            "#[actor] goes on an inherent impl block",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new(
            block.generics.span(),
            "#[actor] does not support generic actors",
        ));
    }
    let self_ty = block.self_ty.clone();
    let type_name = match self_ty.as_ref() {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.clone())
            .ok_or_else(|| syn::Error::new(self_ty.span(), "expected a type name"))?,
        other => return Err(syn::Error::new(other.span(), "expected a type name")),
    };
    let msg_enum = format_ident!("{}Msg", type_name);
    let reply_enum = format_ident!("{}Reply", type_name);

    let mut handlers = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        let Some(pos) = method
            .attrs
            .iter()
            .position(|a| a.path().is_ident("handler"))
        else {
            continue;
        };
        let attr = method.attrs.remove(pos);
        let msg_type = match &attr.meta {
            syn::Meta::Path(_) => method.sig.ident.to_string(),
            _ => attr.parse_args::<LitStr>()?.value(),
        };
        let mut message = None;
        let mut ctx_first = None;
        let mut receiver = false;
        for input in &method.sig.inputs {
            match input {
                FnArg::Receiver(r) => {
                    if r.mutability.is_none() || r.reference.is_none() {
                        return Err(syn::Error::new(r.span(), "handlers take &mut self"));
                    }
                    receiver = true;
                }
                FnArg::Typed(arg) => {
                    if matches!(arg.ty.as_ref(), Type::Reference(_)) {
                        ctx_first = Some(message.is_none());
                    } else if message.is_none() {
                        message = Some((*arg.ty).clone());
                    } else {
                        return Err(syn::Error::new(
                            arg.span(),
                            "a handler takes one message parameter (and optionally ctx: &mut Context<Self>)",
                        ));
                    }
                }
            }
        }
        if !receiver {
            return Err(syn::Error::new(
                method.sig.span(),
                "handlers take &mut self",
            ));
        }
        let message = message.ok_or_else(|| {
            syn::Error::new(
                method.sig.span(),
                "a handler takes one message parameter; use a unit struct for none",
            )
        })?;
        let (reply, fallible) = result_ok_type(&method.sig.output)?;
        handlers.push(Handler {
            variant: syn::Ident::new(&camel(&method.sig.ident.to_string()), Span::call_site()),
            msg_type,
            method: method.sig.ident.clone(),
            message,
            reply,
            fallible,
            is_async: method.sig.asyncness.is_some(),
            ctx_first,
        });
    }
    if handlers.is_empty() {
        return Err(syn::Error::new(
            block.span(),
            "#[actor] needs at least one #[handler] method",
        ));
    }

    let m = quote!(::plexspaces::__macro);
    let variants = handlers.iter().map(|h| {
        let (v, t) = (&h.variant, &h.message);
        quote!(#v(#t))
    });
    let reply_variants = handlers.iter().map(|h| {
        let (v, t) = (&h.variant, &h.reply);
        quote!(#v(#t))
    });
    let froms = handlers.iter().map(|h| {
        let (v, t, r) = (&h.variant, &h.message, &h.reply);
        quote! {
            impl ::core::convert::From<#t> for #msg_enum {
                fn from(msg: #t) -> Self { #msg_enum::#v(msg) }
            }
            impl #m::Request<#self_ty> for #t {
                type Output = #r;
                fn output(reply: #reply_enum) -> #m::Result<#r> {
                    #[allow(unreachable_patterns)]
                    match reply {
                        #reply_enum::#v(value) => ::core::result::Result::Ok(value),
                        _ => ::core::result::Result::Err(#m::Error::InvalidArgument(
                            "reply belongs to another handler".into(),
                        )),
                    }
                }
            }
        }
    });
    let calls = handlers.iter().map(|h| {
        let (v, method) = (&h.variant, &h.method);
        let args = match h.ctx_first {
            None => quote!(msg),
            Some(true) => quote!(ctx, msg),
            Some(false) => quote!(msg, ctx),
        };
        let call = if h.is_async {
            quote!(self.#method(#args).await)
        } else {
            quote!(self.#method(#args))
        };
        let value = if h.fallible {
            quote!(#call.map_err(::core::convert::Into::<#m::BoxError>::into)?)
        } else {
            call
        };
        quote! {
            #msg_enum::#v(msg) => {
                let _ = &ctx;
                ::core::result::Result::Ok(::core::option::Option::Some(#reply_enum::#v(#value)))
            }
        }
    });
    let names = handlers.iter().map(|h| {
        let (v, name) = (&h.variant, &h.msg_type);
        quote!(#msg_enum::#v(_) => #name)
    });
    let decodes = handlers.iter().map(|h| {
        let (v, name, t) = (&h.variant, &h.msg_type, &h.message);
        quote!(#name => env.decode_json::<#t>().map(#msg_enum::#v))
    });
    let encodes = handlers.iter().map(|h| {
        let (v, name) = (&h.variant, &h.msg_type);
        quote!(#msg_enum::#v(msg) => #m::Envelope::json(#name, msg))
    });
    let reply_encodes = handlers.iter().map(|h| {
        let (v, name) = (&h.variant, &h.msg_type);
        quote!(#reply_enum::#v(value) => #m::Envelope::json(#name, value))
    });
    let reply_decodes = handlers.iter().map(|h| {
        let (v, name, t) = (&h.variant, &h.msg_type, &h.reply);
        quote!(#name => env.decode_json::<#t>().map(#reply_enum::#v))
    });
    let type_str = type_name.to_string();
    let snapshot = if options.snapshot {
        quote! {
            fn snapshot(&self) -> #m::Result<::core::option::Option<::std::vec::Vec<u8>>> {
                #m::serde_json::to_vec(self)
                    .map(::core::option::Option::Some)
                    .map_err(|e| #m::Error::Encode(e.to_string()))
            }

            fn restore(&mut self, snapshot: &[u8]) -> #m::Result<()> {
                *self = #m::serde_json::from_slice(snapshot).map_err(|e| #m::Error::Decode {
                    msg_type: "snapshot".to_owned(),
                    detail: e.to_string(),
                })?;
                ::core::result::Result::Ok(())
            }
        }
    } else {
        quote!()
    };

    Ok(quote! {
        #block

        #[doc = concat!("Messages of [`", #type_str, "`], one variant per handler.")]
        #[allow(missing_docs, private_interfaces)]
        pub enum #msg_enum { #(#variants),* }

        #[doc = concat!("Replies of [`", #type_str, "`], one variant per handler.")]
        #[allow(missing_docs, private_interfaces)]
        pub enum #reply_enum { #(#reply_variants),* }

        #(#froms)*

        impl #m::Actor for #self_ty {
            type Msg = #msg_enum;
            type Reply = #reply_enum;

            async fn handle_call(
                &mut self,
                msg: #msg_enum,
                ctx: &mut #m::Context<Self>,
            ) -> ::core::result::Result<::core::option::Option<#reply_enum>, #m::BoxError> {
                match msg { #(#calls)* }
            }

            #snapshot

            fn msg_name(msg: &#msg_enum) -> &'static str {
                match msg { #(#names),* }
            }

            fn decode(env: &#m::Envelope) -> #m::Result<#msg_enum> {
                match env.msg_type.as_str() {
                    #(#decodes,)*
                    other => ::core::result::Result::Err(#m::Error::UnknownMsgType {
                        msg_type: other.to_owned(),
                        actor_type: #type_str.to_owned(),
                    }),
                }
            }

            fn encode(msg: &#msg_enum) -> #m::Result<#m::Envelope> {
                match msg { #(#encodes),* }
            }

            fn encode_reply(_request_type: &str, reply: &#reply_enum) -> #m::Result<#m::Envelope> {
                match reply { #(#reply_encodes),* }
            }

            fn decode_reply(env: &#m::Envelope) -> #m::Result<#reply_enum> {
                match env.msg_type.as_str() {
                    #(#reply_decodes,)*
                    other => ::core::result::Result::Err(#m::Error::UnknownMsgType {
                        msg_type: other.to_owned(),
                        actor_type: #type_str.to_owned(),
                    }),
                }
            }
        }
    })
}
