fn main() {
    println!("injector");
}
