// Keyboard shortcuts: a key presses the button whose data-key it is (1, 2 better; t tie;
// b both bad; s skip; r submit a ranking; u undo). Keys typed into a field are left alone.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, select, textarea")) return;
  const button = document.querySelector(`button[data-key="${CSS.escape(event.key)}"]`);
  if (button && !button.disabled) {
    event.preventDefault();
    button.click();
  }
});
