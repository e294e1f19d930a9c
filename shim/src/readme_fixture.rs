//! Test fixture: the containerd configs the README documents, read out of README.md itself so
//! the tests of `check` and `config merge` run against exactly what operators copy.

const README: &str = include_str!("../../README.md");

/// The README's complete config between `<!-- {marker}:begin -->` and `:end` (its fenced
/// block, without the fences and the list item's indentation).
pub fn readme_config(marker: &str) -> String {
    let begin = format!("<!-- {marker}:begin -->");
    let from = README.find(&begin).expect("begin marker") + begin.len();
    let to = README[from..].find(&format!("<!-- {marker}:end -->")).expect("end") + from;
    README[from..to]
        .lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .map(|l| l.get(3..).unwrap_or("").to_string() + "\n")
        .collect()
}
