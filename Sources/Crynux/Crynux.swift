// Crynux module
