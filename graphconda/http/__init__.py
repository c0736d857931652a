"""Plain HTTP routes: conda channels, uploads, login, health."""
