//! The render target grammar: path expressions with globs, calls with
//! positional and keyword arguments, numbers, strings in either quote
//! style, booleans, `None`, and the pipe form (`a.b|scale(2)`). A syntax
//! error names its byte position; nothing here panics on any input.

/// A parsed target expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A metric path expression (may hold globs).
    Path(String),
    /// A function call.
    Call {
        /// The function's name.
        name: String,
        /// Positional arguments.
        args: Vec<Expr>,
        /// Keyword arguments, in order.
        kwargs: Vec<(String, Expr)>,
    },
    /// A number.
    Number(f64),
    /// A quoted string.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// `None`.
    None,
}

/// A syntax error: what, and where (byte offset in the target).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Byte offset in the target text.
    pub position: usize,
}

/// Deepest nesting accepted (a bound on recursion for hostile input).
const MAX_DEPTH: usize = 64;

/// Parses a whole target.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    p.skip_space();
    let mut expr = p.expr()?;
    p.skip_space();
    // Pipes: `x|f(a)` is `f(x, a)`.
    while p.peek() == Some(b'|') {
        p.at += 1;
        p.skip_space();
        let start = p.at;
        match p.expr()? {
            Expr::Call {
                name,
                mut args,
                kwargs,
            } => {
                args.insert(0, expr);
                expr = Expr::Call { name, args, kwargs };
            }
            _ => return Err(p.error_at("a function call after '|'", start)),
        }
        p.skip_space();
    }
    if p.at != p.s.len() {
        return Err(p.error("unexpected text after the target"));
    }
    Ok(expr)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    depth: usize,
}

fn is_path_byte(b: u8) -> bool {
    // Everything carbon allows in a metric name, plus glob syntax; the
    // grammar's own punctuation ends a path: ( ) , = | and quotes.
    !matches!(b, b'(' | b')' | b',' | b'=' | b'|' | b'\'' | b'"') && b > b' ' && b != 0x7f
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self
            .peek()
            .is_some_and(|b| b == b' ' || b == b'\t' || b == b'\n')
        {
            self.at += 1;
        }
    }

    fn error(&self, message: &str) -> SyntaxError {
        self.error_at(message, self.at)
    }

    fn error_at(&self, message: &str, position: usize) -> SyntaxError {
        let found = match self.s.get(position) {
            Some(b) => format!("{message} (found {:?})", *b as char),
            None => format!("{message} (found the end)"),
        };
        SyntaxError {
            message: found,
            position,
        }
    }

    fn expr(&mut self) -> Result<Expr, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        let result = self.expr_inner();
        self.depth -= 1;
        result
    }

    fn expr_inner(&mut self) -> Result<Expr, SyntaxError> {
        match self.peek() {
            None => Err(self.error("expected an expression")),
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b) if b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.' => {
                if let Some(n) = self.number() {
                    return Ok(n);
                }
                self.path_or_call()
            }
            Some(b) if is_path_byte(b) => self.path_or_call(),
            Some(_) => Err(self.error("expected an expression")),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Expr, SyntaxError> {
        let start = self.at;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error_at("unterminated string", start)),
                Some(b) if b == quote => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') if self.s.get(self.at + 1) == Some(&quote) => {
                    out.push(quote);
                    self.at += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
        Ok(Expr::Str(String::from_utf8_lossy(&out).into_owned()))
    }

    /// A number if the text here is one, ending where an argument ends.
    fn number(&mut self) -> Option<Expr> {
        let start = self.at;
        let mut end = start;
        while end < self.s.len() && is_path_byte(self.s[end]) {
            end += 1;
        }
        let text = std::str::from_utf8(&self.s[start..end]).ok()?;
        let value: f64 = text.parse().ok()?;
        if text.eq_ignore_ascii_case("inf") || text.eq_ignore_ascii_case("nan") {
            return None;
        }
        self.at = end;
        Some(Expr::Number(value))
    }

    fn path_or_call(&mut self) -> Result<Expr, SyntaxError> {
        let start = self.at;
        // A path may hold `{a,b}`: commas inside braces belong to it.
        // A tagged name (`disk.used;dc=eu`) holds `=` after its `;`.
        let mut braces = 0usize;
        let mut tagged = false;
        while let Some(b) = self.peek() {
            match b {
                b'{' => braces += 1,
                b'}' => braces = braces.saturating_sub(1),
                b';' => tagged = true,
                b',' if braces > 0 => {}
                b'=' if braces > 0 || tagged => {}
                _ if !is_path_byte(b) => break,
                _ => {}
            }
            self.at += 1;
        }
        let word = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
        if word.is_empty() {
            return Err(self.error("expected a path or a function"));
        }
        if self.peek() == Some(b'(') {
            if !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(self.error_at("invalid function name", start));
            }
            self.at += 1;
            return self.call(word);
        }
        Ok(match word.as_str() {
            "true" | "True" => Expr::Bool(true),
            "false" | "False" => Expr::Bool(false),
            "None" => Expr::None,
            _ => Expr::Path(word),
        })
    }

    fn call(&mut self, name: String) -> Result<Expr, SyntaxError> {
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        self.skip_space();
        if self.peek() == Some(b')') {
            self.at += 1;
            return Ok(Expr::Call { name, args, kwargs });
        }
        loop {
            self.skip_space();
            let arg_start = self.at;
            let value = self.expr()?;
            self.skip_space();
            if self.peek() == Some(b'=') {
                let Expr::Path(key) = value else {
                    return Err(self.error("a keyword argument needs a name"));
                };
                if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(self.error_at("invalid keyword name", arg_start));
                }
                self.at += 1;
                self.skip_space();
                let value = self.expr()?;
                kwargs.push((key, value));
                self.skip_space();
            } else if !kwargs.is_empty() {
                return Err(
                    self.error_at("a positional argument after keyword arguments", arg_start)
                );
            } else {
                args.push(value);
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b')') => {
                    self.at += 1;
                    return Ok(Expr::Call { name, args, kwargs });
                }
                _ => return Err(self.error("expected ',' or ')'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: Vec<Expr>) -> Expr {
        Expr::Call {
            name: name.into(),
            args,
            kwargs: vec![],
        }
    }

    fn path(p: &str) -> Expr {
        Expr::Path(p.into())
    }

    #[test]
    fn the_grammar() {
        assert_eq!(parse("stats.gauges.x").unwrap(), path("stats.gauges.x"));
        assert_eq!(
            parse("sumSeries(stats.{a,b}.*, x.y)").unwrap(),
            call("sumSeries", vec![path("stats.{a,b}.*"), path("x.y")])
        );
        assert_eq!(
            parse("aliasSub(x, \"(^.*$)\", \"\\1 A\")").unwrap(),
            call(
                "aliasSub",
                vec![
                    path("x"),
                    Expr::Str("(^.*$)".into()),
                    Expr::Str("\\1 A".into())
                ]
            )
        );
        assert_eq!(
            parse("scale(x,2e1)").unwrap(),
            call("scale", vec![path("x"), Expr::Number(20.0)])
        );
        assert_eq!(
            parse("f(x,-0.5,true,None,'s')").unwrap(),
            call(
                "f",
                vec![
                    path("x"),
                    Expr::Number(-0.5),
                    Expr::Bool(true),
                    Expr::None,
                    Expr::Str("s".into())
                ]
            )
        );
        assert_eq!(
            parse("x|scale(2)|alias('p')").unwrap(),
            call(
                "alias",
                vec![
                    call("scale", vec![path("x"), Expr::Number(2.0)]),
                    Expr::Str("p".into())
                ]
            )
        );
        let Expr::Call { kwargs, .. } = parse("summarize(x, '1h', func='max')").unwrap() else {
            panic!()
        };
        assert_eq!(kwargs, vec![("func".to_string(), Expr::Str("max".into()))]);
        assert_eq!(parse("disk.used;dc=eu").unwrap(), path("disk.used;dc=eu"));
        assert_eq!(parse(" a.b ").unwrap(), path("a.b"));
    }

    #[test]
    fn errors_name_the_position() {
        let e = parse("sumSeries(stats.gauges.x").unwrap_err();
        assert_eq!(e.position, 24, "{e}");
        assert_eq!(parse("alias(x,'x").unwrap_err().position, 8);
        assert!(parse("sumSeries(x,)").is_err());
        assert!(parse("").is_err());
        assert!(parse(&"f(".repeat(1000)).is_err());
    }
}
