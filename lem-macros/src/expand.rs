//! Stage 3: emit the user's function unchanged, a runner, and its registration.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ItemFn;

use crate::parse::Options;
use crate::validate::Shape;

fn some<T: quote::ToTokens>(v: Option<T>) -> TokenStream {
    match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

fn some_usize(v: Option<u64>) -> TokenStream {
    some(v.map(|n| proc_macro2::Literal::usize_unsuffixed(n as usize)))
}

fn some_f64(v: Option<f64>) -> TokenStream {
    some(v.map(proc_macro2::Literal::f64_suffixed))
}

pub fn expand(f: &ItemFn, o: &Options, shape: &Shape) -> TokenStream {
    let ident = &f.sig.ident;
    let runner = format_ident!("__lem_energy_bench_{}", ident);
    let name = ident.to_string();
    let args = o.args.as_ref().map(|(a, _)| a.clone()).unwrap_or_default();
    // a string argument is labelled by its value, anything else by its tokens
    let labels: Vec<String> = args
        .iter()
        .map(|e| match e {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => s.value(),
            _ => quote!(#e).to_string().replace(' ', ""),
        })
        .collect();
    let n = args.len();
    let body = match shape {
        Shape::Plain => quote! { __lem_b.iter(|| #ident()); },
        Shape::Bencher => quote! { #ident(__lem_b); },
        Shape::Arg(t) => quote! {
            let __lem_args: [#t; #n] = [#(#args),*];
            let __lem_a = &__lem_args[__lem_i];
            __lem_b.iter(|| #ident(::core::clone::Clone::clone(__lem_a)));
        },
        Shape::BencherArg(t) => quote! {
            let __lem_args: [#t; #n] = [#(#args),*];
            let __lem_a = ::core::clone::Clone::clone(&__lem_args[__lem_i]);
            #ident(__lem_b, __lem_a);
        },
    };
    let cv = some_f64(o.cv);
    let window = some_usize(o.window);
    let min_warmup = some_usize(o.min_warmup);
    let max_warmup = some_usize(o.max_warmup);
    let warmup = some(o.warmup_fixed.map(|fixed| {
        if fixed {
            quote!(::lem::__private::WarmupMode::Fixed)
        } else {
            quote!(::lem::__private::WarmupMode::Converge)
        }
    }));
    let warmup_iters = some_usize(o.warmup_iters);
    let samples = some_usize(o.samples);
    let min_sample_s = some_f64(o.min_sample_s);
    let max_uncertainty = some_f64(o.max_uncertainty);
    let max_time_s = some_f64(o.max_time_s);
    let cooldown_c = some_f64(o.cooldown_c);
    let cooldown_timeout_s = some_f64(o.cooldown_timeout_s);
    let on_throttle = some(o.on_throttle.map(|p| match p {
        1 => quote!(::lem::__private::ThrottlePolicy::Discard),
        2 => quote!(::lem::__private::ThrottlePolicy::Abort),
        _ => quote!(::lem::__private::ThrottlePolicy::Continue),
    }));
    let cycles = some_usize(o.cycles);
    let cycle_gap_s = some_f64(o.cycle_gap_s);
    let units = some(o.units.as_deref());
    let device = some(o.device.as_deref());
    let bench_name = some(o.name.as_deref());
    let ignore = o.ignore;
    let seed = some(o.seed);
    let random_start = some(o.random_start);
    quote! {
        #f

        #[doc(hidden)]
        #[allow(non_snake_case, unused_variables, clippy::all)]
        fn #runner(__lem_b: &mut ::lem::Bencher<'_>, __lem_i: usize) {
            #body
        }

        ::lem::__private::inventory::submit! {
            ::lem::__private::BenchDef {
                name: #name,
                module_path: ::core::module_path!(),
                options: ::lem::__private::BenchOptions {
                    cv: #cv,
                    window: #window,
                    min_warmup: #min_warmup,
                    max_warmup: #max_warmup,
                    warmup: #warmup,
                    warmup_iters: #warmup_iters,
                    samples: #samples,
                    min_sample_s: #min_sample_s,
                    max_uncertainty: #max_uncertainty,
                    max_time_s: #max_time_s,
                    cooldown_c: #cooldown_c,
                    cooldown_timeout_s: #cooldown_timeout_s,
                    on_throttle: #on_throttle,
                    cycles: #cycles,
                    cycle_gap_s: #cycle_gap_s,
                    units: #units,
                    device: #device,
                    ignore: #ignore,
                    name: #bench_name,
                    seed: #seed,
                    random_start: #random_start,
                },
                args: &[#(#labels),*],
                run: #runner,
            }
        }
    }
}
