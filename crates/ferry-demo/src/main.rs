fn main() {
    leptos::mount::mount_to_body(ferry_demo::App);
}
