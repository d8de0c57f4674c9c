//! Declarative helpers shared by the crate.

/// Declares a fieldless enum whose values have names: `ALL` lists every variant (in
/// declaration order) and `name()` gives each one's text. Used for metric labels (so every
/// series can be created up front) and for the kinds of decisions (so tests can check that
/// every kind is produced).
macro_rules! named_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident => $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            /// The value's name.
            pub const fn name(self) -> &'static str {
                match self { $($name::$v => $text,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
