//! Print the API's JSON Schema: `cargo run -p netmode-advisor --features schema --example schema > docs/schema/v1.json`

fn main() {
    print!("{}", netmode_advisor::schema::text());
}
