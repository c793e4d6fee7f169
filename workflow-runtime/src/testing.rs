//! Tools for testing workflows: a crash checker that crashes a workflow after every commit
//! point and explores the orders in which its concurrent steps finish.
