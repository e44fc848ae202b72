//! How an option is declared, once: its section, name, type, default, bounds
//! and help, in one place ([`section!`]).
//!
//! The same declarations read `zaqar.conf`, print the sample configuration
//! (`zaqar-server --sample-config`) and build the configuration reference,
//! so none of the three can drift from the others.

use std::net::IpAddr;

/// What the configuration reference says of one option.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionDoc {
    /// The section (`transport`, `drivers:message_store:redis`, ...).
    pub section: &'static str,
    /// The option's name.
    pub name: &'static str,
    /// The kind of value (`integer`, `boolean`, `list`, ...).
    pub kind: &'static str,
    /// The default, as it would be written in `zaqar.conf`.
    pub default: String,
    /// What it does (the declaration's doc comment).
    pub help: &'static str,
}

/// A type an option can have: parsed from, and written as, `zaqar.conf` text.
pub trait OptionValue: Sized {
    /// The kind of value, as the configuration reference names it.
    const KIND: &'static str;

    /// Parses a value as written in `zaqar.conf` (already trimmed).
    ///
    /// # Errors
    /// Why the text is not a value of this type.
    fn parse_option(raw: &str) -> Result<Self, String>;

    /// The value as it would be written in `zaqar.conf`.
    fn to_option(&self) -> String;
}

macro_rules! from_str_value {
    ($($ty:ty => $kind:literal),* $(,)?) => {
        $(impl OptionValue for $ty {
            const KIND: &'static str = $kind;
            fn parse_option(raw: &str) -> Result<Self, String> {
                raw.parse().map_err(|e| format!("{raw:?}: {e}"))
            }
            fn to_option(&self) -> String {
                self.to_string()
            }
        })*
    };
}

from_str_value!(
    i64 => "integer",
    u64 => "integer",
    u32 => "integer",
    u16 => "port number",
    usize => "integer",
    f64 => "floating point",
    IpAddr => "IP address",
);

impl OptionValue for bool {
    const KIND: &'static str = "boolean";
    fn parse_option(raw: &str) -> Result<Self, String> {
        super::parse_bool(raw).ok_or_else(|| format!("{raw:?} is not a boolean"))
    }
    fn to_option(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for String {
    const KIND: &'static str = "string";
    fn parse_option(raw: &str) -> Result<Self, String> {
        Ok(raw.to_owned())
    }
    fn to_option(&self) -> String {
        self.clone()
    }
}

impl OptionValue for Vec<String> {
    const KIND: &'static str = "list";
    fn parse_option(raw: &str) -> Result<Self, String> {
        Ok(super::split_list(raw))
    }
    fn to_option(&self) -> String {
        self.join(", ")
    }
}

/// An optional value: empty (or absent) is none.
impl<T: OptionValue> OptionValue for Option<T> {
    const KIND: &'static str = T::KIND;
    fn parse_option(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            Ok(None)
        } else {
            T::parse_option(raw).map(Some)
        }
    }
    fn to_option(&self) -> String {
        self.as_ref().map(T::to_option).unwrap_or_default()
    }
}

/// A list of CIDRs (or single addresses).
impl OptionValue for Vec<ipnet::IpNet> {
    const KIND: &'static str = "list of CIDRs";
    fn parse_option(raw: &str) -> Result<Self, String> {
        super::split_list(raw)
            .into_iter()
            .map(|net| {
                net.parse::<ipnet::IpNet>()
                    .or_else(|_| net.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|e| format!("{net:?}: {e}"))
            })
            .collect()
    }
    fn to_option(&self) -> String {
        let nets: Vec<String> = self.iter().map(ToString::to_string).collect();
        nets.join(", ")
    }
}

/// Declares an enum option: its variants and the words that spell them.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $($word:literal)|+ ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $( $(#[$vmeta])* $variant ),* }

        impl $crate::config::option::OptionValue for $name {
            const KIND: &'static str = "choice";
            fn parse_option(raw: &str) -> Result<Self, String> {
                let word = raw.to_ascii_lowercase();
                $( if [$($word),+].contains(&word.as_str()) { return Ok($name::$variant); } )*
                let known: Vec<&str> = vec![$( [$($word),+][0] ),*];
                Err(format!("{raw:?} is not one of {}", known.join(", ")))
            }
            fn to_option(&self) -> String {
                match self { $( $name::$variant => [$($word),+][0].to_owned() ),* }
            }
        }
    };
}
pub(crate) use choice;

/// Declares a section: a struct with one field per option, each with its
/// doc comment (the option's help), type, default and optional check, and
/// the code that reads it and documents it.
///
/// ```text
/// section! {
///     /// `[transport]`: ...
///     pub struct TransportConfig in "transport" {
///         /// TTL of a message posted without one (seconds).
///         default_message_ttl: i64 = 3600, check range(60, MAX_TTL);
///         /// An option whose name is not a Rust identifier.
///         external_port as "external-port": Option<u16> = None;
///     }
/// }
/// ```
macro_rules! section {
    (@name $field:ident) => { stringify!($field) };
    (@name $field:ident $name:literal) => { $name };
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident in $section:literal {
            $(
                $(#[doc = $doc:literal])*
                $field:ident $(as $opt:literal)? : $ty:ty = $default:expr $(, check $check:expr)? ;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $name {
            /// The section's name in `zaqar.conf`.
            pub const SECTION: &'static str = $section;

            /// Reads the section.
            ///
            /// # Errors
            /// The first value that is not valid, naming section and option.
            pub fn read(r: &mut $crate::config::Reader) -> Result<Self, $crate::config::ConfigError> {
                Self::read_in(r, $section)
            }

            /// Reads a section of this shape under another name.
            ///
            /// # Errors
            /// The first value that is not valid, naming section and option.
            pub fn read_in(
                r: &mut $crate::config::Reader,
                section: &str,
            ) -> Result<Self, $crate::config::ConfigError> {
                Ok($name {
                    $( $field: {
                        let option = $crate::config::option::section!(@name $field $($opt)?);
                        let value: $ty = r.get(section, option, || $default)?;
                        $( ($check)(&value).map_err(|reason| $crate::config::invalid(section, option, reason))?; )?
                        value
                    }, )*
                })
            }

            /// Every option of the section, for the sample configuration and
            /// the configuration reference.
            pub fn options() -> Vec<$crate::config::option::OptionDoc> {
                Self::options_in($section)
            }

            /// The options of a section of this shape under another name.
            pub fn options_in(section: &'static str) -> Vec<$crate::config::option::OptionDoc> {
                let defaults = $name::default();
                vec![ $( $crate::config::option::OptionDoc {
                    section,
                    name: $crate::config::option::section!(@name $field $($opt)?),
                    kind: <$ty as $crate::config::option::OptionValue>::KIND,
                    default: $crate::config::option::OptionValue::to_option(&defaults.$field),
                    help: concat!($($doc, "\n"),*),
                }, )* ]
            }
        }
    };
}
pub(crate) use section;

/// A check that an integer lies in `lo..=hi`.
pub fn range<T: PartialOrd + std::fmt::Display + Copy>(
    lo: T,
    hi: T,
) -> impl Fn(&T) -> Result<(), String> {
    move |v| {
        if *v >= lo && *v <= hi {
            Ok(())
        } else {
            Err(format!("{v} is not between {lo} and {hi}"))
        }
    }
}

/// A check that a string is not empty.
#[allow(clippy::ptr_arg)] // checks receive the option's type
pub fn not_empty(v: &String) -> Result<(), String> {
    if v.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}
