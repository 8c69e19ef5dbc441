fn main() {
    println!("ochopod {}", ochopod::VERSION);
}
