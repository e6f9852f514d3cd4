#![warn(missing_docs)]
//! The `#[energy_bench]` attribute macro. Use it through its re-export, `lem::energy_bench`,
//! which documents every form and option.
//!
//! Staged like a compiler: `parse` reads the options, `validate` checks the function's
//! signature, `expand` generates the registration. Errors point at the offending token,
//! and the user's function is always emitted so the IDE keeps working.

use proc_macro::TokenStream;

mod expand;
mod parse;
mod validate;

/// Turn a function into an energy benchmark run by `lem::main!()`. See `lem::energy_bench`.
#[proc_macro_attribute]
pub fn energy_bench(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2: proc_macro2::TokenStream = item.clone().into();
    let func = match syn::parse::<syn::ItemFn>(item) {
        Ok(f) => f,
        Err(e) => {
            let err = syn::Error::new(e.span(), "#[energy_bench] must be placed on a function");
            let ce = err.to_compile_error();
            return quote::quote!(#item2 #ce).into();
        }
    };
    let opts = parse::parse_options(attr.into());
    let shape = validate::validate(&func, opts.as_ref().ok());
    match (opts, shape) {
        (Ok(opts), Ok(shape)) => expand::expand(&func, &opts, &shape).into(),
        (o, s) => {
            let mut errors: Option<syn::Error> = None;
            for e in [o.err(), s.err()].into_iter().flatten() {
                match errors.as_mut() {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
            }
            let ce = errors.map(|e| e.to_compile_error());
            quote::quote!(#func #ce).into()
        }
    }
}
